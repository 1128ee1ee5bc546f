package testenv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
)

// DescribeAWSError is an SDK error as a caller classifies it: its chain of
// types, API code and message, HTTP status, whether it is a deadline or a
// timeout, and its text without the per-call request id or a dialled port.
// Two errors that describe alike are the same error to every caller.
func DescribeAWSError(err error) string {
	var parts []string
	for e := err; e != nil; e = errors.Unwrap(e) {
		parts = append(parts, fmt.Sprintf("%T", e))
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		parts = append(parts, "code="+api.ErrorCode(), "message="+api.ErrorMessage())
	}
	text := err.Error()
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		parts = append(parts, fmt.Sprintf("status=%d", re.HTTPStatusCode()))
		if id := re.ServiceRequestID(); id != "" {
			text = strings.ReplaceAll(text, id, "<id>")
		}
	}
	var ne net.Error
	parts = append(parts, fmt.Sprintf("deadline=%v timeout=%v", errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout()))
	if i := strings.Index(text, "dial tcp "); i >= 0 {
		text = text[:i]
	}
	return strings.Join(parts, " ") + " | " + text
}

// VerifySigV4 signs a received request again, over the headers its
// Authorization names, at its X-Amz-Date, and compares the signatures.
func VerifySigV4(method, host, path string, header http.Header, body []byte, creds aws.Credentials, service, region string) error {
	auth := header.Get("Authorization")
	_, signed, ok := strings.Cut(auth, "SignedHeaders=")
	if !ok {
		return fmt.Errorf("no SigV4 Authorization: %q", auth)
	}
	signed, _, _ = strings.Cut(signed, ",")
	at, err := time.Parse("20060102T150405Z", header.Get("X-Amz-Date"))
	if err != nil {
		return err
	}
	req, _ := http.NewRequest(method, "http://"+host+path, bytes.NewReader(body))
	req.Header = http.Header{}
	for _, name := range strings.Split(signed, ";") {
		if name == "host" {
			continue
		}
		if v := header.Values(name); len(v) > 0 {
			req.Header[http.CanonicalHeaderKey(name)] = v
		}
	}
	req.ContentLength = int64(len(body))
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), service, region, at); err != nil {
		return err
	}
	if got := req.Header.Get("Authorization"); got != auth {
		return fmt.Errorf("signature does not verify:\nsent:     %s\nexpected: %s", auth, got)
	}
	return nil
}
