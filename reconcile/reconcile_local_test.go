package reconcile

// Servers started by this test: internal/bedrocklocal on 127.0.0.1, serving
// Bedrock Runtime calls, their CloudTrail trail files and LookupEvents.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	brtypes "github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/meter-dev/meter/internal/bedrocklocal"
	"github.com/meter-dev/meter/schemas"
)

// reconcileClock is the local server's clock: one second passes per call.
type reconcileClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *reconcileClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *reconcileClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// TestReconcileAgainstLocalBedrock makes real SDK calls to the local Bedrock
// server, meters them the way the invoker does (request id from the answer),
// with one call left unmetered, one lost by CloudTrail, one metered under the
// wrong model and one throttled, and reconciles the day from the server's
// trail files and from its LookupEvents API, paced at the default rate against
// a server that throttles beyond 2 calls per second.
func TestReconcileAgainstLocalBedrock(t *testing.T) {
	clock := &reconcileClock{now: ctTime("2026-11-25T23:10:00Z")}
	trailDir := t.TempDir()
	srv, err := bedrocklocal.New(bedrocklocal.Config{
		TrailDir: trailDir, TrailBatch: 20, LookupRate: 2, Now: clock.Now,
		Users: map[string]string{"AKIAINVOKER00000001": "meter-invoker"},
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	defer srv.Close()
	creds := credentials.NewStaticCredentialsProvider("AKIAINVOKER00000001", "secret", "")
	br := bedrockruntime.New(bedrockruntime.Options{Region: "us-east-1", BaseEndpoint: aws.String(hs.URL), Credentials: creds})
	ctx := context.Background()

	header := func(k, v string) func(*bedrockruntime.Options) {
		return func(o *bedrockruntime.Options) { o.APIOptions = append(o.APIOptions, smithyhttp.AddHeaderValue(k, v)) }
	}
	var usage []schemas.Event
	meter := func(requestID, model, status string) {
		usage = append(usage, schemas.Event{
			SchemaVersion: 1, EventID: fmt.Sprintf("ev-%d", len(usage)), RequestID: requestID, Timestamp: clock.Now(),
			TeamID: "team-search", ModelID: model, Operation: "Converse", Status: status, LatencyMS: 5,
		})
	}
	call := func(i int, opts ...func(*bedrockruntime.Options)) (string, error) {
		clock.set(clock.Now().Add(time.Second))
		out, err := br.Converse(ctx, &bedrockruntime.ConverseInput{
			ModelId: aws.String(ctHaiku),
			Messages: []brtypes.Message{{Role: brtypes.ConversationRoleUser, Content: []brtypes.ContentBlock{
				&brtypes.ContentBlockMemberText{Value: fmt.Sprintf("summarise ticket %d", i)},
			}}},
		}, opts...)
		if err != nil {
			var re *awshttp.ResponseError
			if errors.As(err, &re) {
				return re.ServiceRequestID(), err
			}
			t.Fatal(err)
		}
		id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
		return id, nil
	}

	want := map[string]string{}
	for i := 0; i < 56; i++ {
		id, err := call(i)
		if err != nil {
			t.Fatal(err)
		}
		switch i {
		case 7: // bypassed metering
			want[id] = "unmetered"
			continue
		case 8: // metered under another model than invoked
			meter(id, "us."+ctHaiku, "success")
			want[id] = "mismatched"
			continue
		}
		meter(id, ctHaiku, "success")
		want[id] = "matched"
	}
	id, err := call(100, header(bedrocklocal.HeaderOmitTrail, "true")) // CloudTrail lost it
	if err != nil {
		t.Fatal(err)
	}
	meter(id, ctHaiku, "success")
	want[id] = "unconfirmed"
	// Every SDK retry is a request of its own in CloudTrail, with its own
	// request id: a meter that lets the SDK retry must meter each attempt.
	id, err = call(101, header(bedrocklocal.HeaderInjectError, "ThrottlingException"),
		func(o *bedrockruntime.Options) { o.RetryMaxAttempts = 1 })
	if err == nil || id == "" {
		t.Fatalf("injected throttle: id %q, err %v", id, err)
	}
	meter(id, ctHaiku, "throttled")
	want[id] = "matched"
	// The last calls of the day are delivered after midnight.
	clock.set(ctTime("2026-11-26T00:06:00Z"))
	if err := srv.Flush(); err != nil {
		t.Fatal(err)
	}

	spill, err := filepath.Glob(filepath.Join(trailDir, "AWSLogs", "*", "CloudTrail", "us-east-1", "2026", "11", "26", "*.json.gz"))
	if err != nil || len(spill) == 0 {
		t.Fatalf("no trail file delivered on the 26th: %v %v", spill, err)
	}

	now := ctTime("2026-11-27T09:00:00Z")
	files := openTrailStore(t, t.TempDir())
	putUsage(t, files, usage)
	repFiles, err := Run(ctx, Config{Day: "2026-11-25", Store: files, CloudTrail: "file://" + trailDir, Now: func() time.Time { return now }, Threshold: 1})
	if err != nil {
		t.Fatal(err)
	}

	lookup := openTrailStore(t, t.TempDir())
	putUsage(t, lookup, usage)
	ct := cloudtrail.New(cloudtrail.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(hs.URL), Credentials: creds,
		RetryMaxAttempts: 1, // a ThrottlingException fails the test instead of being retried
	})
	start := time.Now()
	repLookup, err := Run(ctx, Config{Day: "2026-11-25", Store: lookup, CloudTrail: "lookup", Lookup: ct, Now: func() time.Time { return now }, Threshold: 1})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Errorf("2 LookupEvents pages in %s: not paced", d)
	}

	if len(repFiles.Rows) != len(want) || len(repLookup.Rows) != len(want) {
		t.Errorf("rows: files %d, lookup %d, want %d", len(repFiles.Rows), len(repLookup.Rows), len(want))
	}
	for _, row := range repFiles.Rows {
		if want[row.RequestID] != row.Status {
			t.Errorf("%s: status %s, want %s (%s)", row.RequestID, row.Status, want[row.RequestID], row.Detail)
		}
		if row.Status == "unmetered" && row.Caller != "arn:aws:iam::123456789012:user/meter-invoker" {
			t.Errorf("unmetered row without a caller: %+v", row)
		}
	}
	if c := repFiles.Counts; c["matched"] != 55 || c["unmetered"] != 1 || c["unconfirmed"] != 1 || c["mismatched"] != 1 {
		t.Errorf("counts = %v", c)
	}
	csvKey, _ := schemas.ReconciliationKeys("2026-11-25")
	if a, b := readKey(t, files, csvKey), readKey(t, lookup, csvKey); !bytes.Equal(a, b) {
		t.Errorf("trail files and LookupEvents give different reports:\n%s\n---\n%s", a, b)
	}
}
