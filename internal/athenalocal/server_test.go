package athenalocal_test

// The local Athena API spoken to by the real aws-sdk-go-v2 Athena client
// (the server in process, on 127.0.0.1 through httptest).

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/athena"
	"github.com/aws/aws-sdk-go-v2/service/athena/types"

	"github.com/meter-dev/meter/internal/athenalocal"
	"github.com/meter-dev/meter/internal/athenaq"
)

func start(t *testing.T, dir string) (*athenaq.Client, *athena.Client, string) {
	t.Helper()
	srv, err := athenalocal.New(athenalocal.Config{Locations: map[string]string{"s3://bucket/": dir}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	api := athena.New(athena.Options{Region: "us-east-1", BaseEndpoint: aws.String(hs.URL),
		Credentials: credentials.NewStaticCredentialsProvider("k", "s", "")})
	return &athenaq.Client{API: api, Poll: time.Millisecond, MaxPoll: 20 * time.Millisecond, OutputLocation: "s3://bucket/results/"}, api, hs.URL
}

func TestResultsPageWithHeaderAndNulls(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c, api, _ := start(t, dir)
	res, err := c.Run(ctx, "SELECT i AS n, CASE WHEN i % 2 = 0 THEN NULL ELSE 'odd' END AS s, CAST(i AS DECIMAL(10, 3)) / 8 AS d FROM range(2500) t(i) ORDER BY i")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 2500 || strings.Join(res.Columns, ",") != "n,s,d" {
		t.Fatalf("%d rows, columns %v", len(res.Rows), res.Columns)
	}
	for i, r := range res.Rows {
		if r[0] != strconv.Itoa(i) || res.Nulls[i][1] != (i%2 == 0) {
			t.Fatalf("row %d: %v nulls %v", i, r, res.Nulls[i])
		}
	}
	if res.Rows[3][2] != "0.375000" && !strings.HasPrefix(res.Rows[3][2], "0.375") {
		t.Errorf("decimal rendered %q", res.Rows[3][2])
	}
	// The first page starts with the header row, as Athena's does, and pages hold at most 1,000 rows.
	page, err := api.GetQueryResults(ctx, &athena.GetQueryResultsInput{QueryExecutionId: aws.String(res.QueryID)})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.ResultSet.Rows) != 1000 || aws.ToString(page.ResultSet.Rows[0].Data[0].VarCharValue) != "n" || page.NextToken == nil {
		t.Errorf("first page: %d rows, first %v", len(page.ResultSet.Rows), page.ResultSet.Rows[0].Data)
	}
	// The result file was written where OutputLocation points.
	data, err := os.ReadFile(filepath.Join(dir, "results", res.QueryID+".csv"))
	if err != nil || !strings.HasPrefix(string(data), "n,s,d\n0,,0") {
		t.Errorf("result file: %v %.40q", err, data)
	}
	if res.OutputLocation != "s3://bucket/results/"+res.QueryID+".csv" {
		t.Errorf("output location %q", res.OutputLocation)
	}
}

func TestErrorsSpeakAthenasShapes(t *testing.T) {
	ctx := context.Background()
	c, api, url := start(t, t.TempDir())
	_, err := c.Run(ctx, "SELECT no_such_column FROM range(1)")
	var qe *athenaq.QueryError
	if !errors.As(err, &qe) || qe.State != "FAILED" || qe.Reason == "" {
		t.Errorf("bad SQL: %v", err)
	}
	_, err = api.GetQueryExecution(ctx, &athena.GetQueryExecutionInput{QueryExecutionId: aws.String("00000000-0000-0000-0000-000000000000")})
	var ire *types.InvalidRequestException
	if !errors.As(err, &ire) {
		t.Errorf("unknown query id: %v", err)
	}
	// A table whose location the server does not map fails, naming it.
	if _, err := c.Exec(ctx, "CREATE EXTERNAL TABLE t (a string) STORED AS PARQUET LOCATION 's3://elsewhere/x/'"); err == nil || !strings.Contains(err.Error(), "s3://elsewhere/x/") {
		t.Errorf("unmapped location: %v", err)
	}
	if _, err := c.Exec(ctx, "CREATE EXTERNAL TABLE t (a string) STORED AS PARQUET LOCATION 's3://bucket/../../etc/'"); err == nil {
		t.Error("a location climbing out of its bucket was accepted")
	}
	// An unknown operation answers 400 with Athena's error type header.
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("{}"))
	req.Header.Set("X-Amz-Target", "AmazonAthena.DeleteEverything")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 || resp.Header.Get("X-Amzn-ErrorType") != "UnknownOperationException" {
		t.Errorf("unknown operation: %d %q", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"))
	}
}

func TestTablesAndUnload(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c, _, _ := start(t, dir)
	for _, q := range []string{
		"CREATE EXTERNAL TABLE IF NOT EXISTS src (`k` string, v bigint) PARTITIONED BY (dt string) STORED AS PARQUET LOCATION 's3://bucket/src/'",
		"UNLOAD (SELECT 'a' AS k, CAST(1 AS BIGINT) AS v, '2026-01-01' AS dt UNION ALL SELECT 'b', 2, '2026-01-02') TO 's3://bucket/src/' WITH (format = 'PARQUET', partitioned_by = ARRAY['dt'])",
	} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	res, err := c.Run(ctx, `SELECT k, v, dt, "$path" AS p FROM src WHERE dt = '2026-01-02'`)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 1 || res.Rows[0][0] != "b" || res.Rows[0][1] != "2" || !strings.HasPrefix(res.Rows[0][3], "s3://bucket/src/dt=2026-01-02/") {
		t.Fatalf("rows %v", res.Rows)
	}
	// An unpartitioned UNLOAD needs an empty location, as in Athena.
	unload := "UNLOAD (SELECT 1 AS x) TO 's3://bucket/once/' WITH (format = 'PARQUET')"
	if _, err := c.Exec(ctx, unload); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, unload); err == nil || !strings.Contains(err.Error(), "HIVE_PATH_ALREADY_EXISTS") {
		t.Errorf("second UNLOAD to the same place: %v", err)
	}
}
