// Package awshttp holds HTTP plumbing for the AWS SDK clients meter uses.
package awshttp

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
)

// Doer is the SDK's HTTP client interface.
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// BufferedBody hands the HTTP transport a request body of its own. For
// streaming operations (ConverseStream, InvokeModelWithResponseStream) the
// SDK returns, and releases its request body, as soon as the response headers
// arrive, while net/http may still be reading that body; the read then fails
// and the transport closes the connection under the live event stream ("use
// of closed network connection"), and the SDK may retry a call that Bedrock
// already served. Copying the small JSON body first takes it out of the race.
type BufferedBody struct{ Next Doer }

// Do implements Doer.
func (c BufferedBody) Do(r *http.Request) (*http.Response, error) {
	if r.Body != nil && r.Body != http.NoBody {
		b, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("buffering request body: %w", err)
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
		r.ContentLength = int64(len(b))
	}
	next := c.Next
	if next == nil {
		next = http.DefaultClient
	}
	return next.Do(r)
}
