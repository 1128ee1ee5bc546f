// Package athenaq runs SQL in Amazon Athena: it submits a query to a
// workgroup, polls until the query ends and pages through its results. It is
// the one place meter speaks the Athena API; callers hand it SQL and get rows
// of strings back, as Athena returns them.
package athenaq

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/athena"
	"github.com/aws/aws-sdk-go-v2/service/athena/types"
)

// API is the part of the Athena client a query needs (*athena.Client has it).
type API interface {
	StartQueryExecution(ctx context.Context, in *athena.StartQueryExecutionInput, opts ...func(*athena.Options)) (*athena.StartQueryExecutionOutput, error)
	GetQueryExecution(ctx context.Context, in *athena.GetQueryExecutionInput, opts ...func(*athena.Options)) (*athena.GetQueryExecutionOutput, error)
	GetQueryResults(ctx context.Context, in *athena.GetQueryResultsInput, opts ...func(*athena.Options)) (*athena.GetQueryResultsOutput, error)
}

// Defaults of a Client.
const (
	DefaultPoll    = 500 * time.Millisecond // first wait between GetQueryExecution calls
	DefaultMaxPoll = 5 * time.Second        // the wait doubles up to this
	// DefaultMaxRows bounds the rows one query may return into memory.
	DefaultMaxRows = 1_000_000
)

// Client runs queries in one workgroup and database.
type Client struct {
	API       API
	Workgroup string // "" uses the account's primary workgroup
	Catalog   string // "" is AwsDataCatalog
	Database  string // the Glue database of the tables
	// OutputLocation is s3://BUCKET/PREFIX/ for query results; "" uses the
	// workgroup's own results location.
	OutputLocation string
	Poll, MaxPoll  time.Duration
	MaxRows        int
}

// Result is a finished query's rows.
type Result struct {
	QueryID string
	Columns []string
	// Rows holds every row's cells as Athena renders them; a NULL is "" with
	// the same index set in Nulls.
	Rows         [][]string
	Nulls        []map[int]bool
	ScannedBytes int64
	// OutputLocation is where Athena wrote the result file.
	OutputLocation string
}

// QueryError is a query Athena ran and failed or cancelled, or one it does
// not know (State UNKNOWN): waiting longer will not change it.
type QueryError struct {
	QueryID, State, Reason string
}

func (e *QueryError) Error() string {
	return fmt.Sprintf("athena query %s %s: %s", e.QueryID, e.State, e.Reason)
}

// Start submits sql and returns the query's id.
func (c *Client) Start(ctx context.Context, sql string) (string, error) {
	if c.API == nil {
		return "", errors.New("athena: no client")
	}
	in := &athena.StartQueryExecutionInput{QueryString: aws.String(sql)}
	if c.Workgroup != "" {
		in.WorkGroup = aws.String(c.Workgroup)
	}
	if c.Database != "" || c.Catalog != "" {
		in.QueryExecutionContext = &types.QueryExecutionContext{}
		if c.Database != "" {
			in.QueryExecutionContext.Database = aws.String(c.Database)
		}
		if c.Catalog != "" {
			in.QueryExecutionContext.Catalog = aws.String(c.Catalog)
		}
	}
	if c.OutputLocation != "" {
		in.ResultConfiguration = &types.ResultConfiguration{OutputLocation: aws.String(c.OutputLocation)}
	}
	out, err := c.API.StartQueryExecution(ctx, in)
	if err != nil {
		return "", fmt.Errorf("starting athena query: %w", err)
	}
	if out.QueryExecutionId == nil || *out.QueryExecutionId == "" {
		return "", errors.New("athena: StartQueryExecution returned no query id")
	}
	return *out.QueryExecutionId, nil
}

// Wait polls the query until it ends; a failed or cancelled query is a
// *QueryError. Cancelling ctx stops the wait, not the query.
func (c *Client) Wait(ctx context.Context, id string) (*types.QueryExecution, error) {
	wait, max := c.Poll, c.MaxPoll
	if wait <= 0 {
		wait = DefaultPoll
	}
	if max <= 0 {
		max = DefaultMaxPoll
	}
	for {
		out, err := c.API.GetQueryExecution(ctx, &athena.GetQueryExecutionInput{QueryExecutionId: aws.String(id)})
		var gone *types.InvalidRequestException
		if errors.As(err, &gone) {
			// Athena knows no such query (or no longer): it will never end.
			return nil, &QueryError{QueryID: id, State: "UNKNOWN", Reason: aws.ToString(gone.Message)}
		}
		if err != nil {
			return nil, fmt.Errorf("polling athena query %s: %w", id, err)
		}
		qe := out.QueryExecution
		if qe == nil || qe.Status == nil {
			return nil, fmt.Errorf("athena query %s: no status", id)
		}
		switch qe.Status.State {
		case types.QueryExecutionStateSucceeded:
			return qe, nil
		case types.QueryExecutionStateFailed, types.QueryExecutionStateCancelled:
			return nil, &QueryError{QueryID: id, State: string(qe.Status.State), Reason: aws.ToString(qe.Status.StateChangeReason)}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		if wait *= 2; wait > max {
			wait = max
		}
	}
}

// Results pages through a succeeded query's rows. Athena's first row of a
// SELECT is its column names; header says whether to drop it.
func (c *Client) Results(ctx context.Context, id string, header bool) (*Result, error) {
	limit := c.MaxRows
	if limit <= 0 {
		limit = DefaultMaxRows
	}
	res := &Result{QueryID: id}
	var token *string
	first := true
	for {
		out, err := c.API.GetQueryResults(ctx, &athena.GetQueryResultsInput{QueryExecutionId: aws.String(id), NextToken: token, MaxResults: aws.Int32(1000)})
		if err != nil {
			return nil, fmt.Errorf("reading results of athena query %s: %w", id, err)
		}
		if out.ResultSet == nil {
			return nil, fmt.Errorf("athena query %s: no result set", id)
		}
		if first && out.ResultSet.ResultSetMetadata != nil {
			for _, ci := range out.ResultSet.ResultSetMetadata.ColumnInfo {
				res.Columns = append(res.Columns, aws.ToString(ci.Name))
			}
		}
		rows := out.ResultSet.Rows
		if first && header && len(rows) > 0 {
			rows = rows[1:]
		}
		first = false
		for _, r := range rows {
			if len(res.Rows) >= limit {
				return nil, fmt.Errorf("athena query %s returned more than %d rows", id, limit)
			}
			cells := make([]string, len(r.Data))
			var nulls map[int]bool
			for i, d := range r.Data {
				if d.VarCharValue == nil {
					if nulls == nil {
						nulls = map[int]bool{}
					}
					nulls[i] = true
					continue
				}
				cells[i] = *d.VarCharValue
			}
			res.Rows = append(res.Rows, cells)
			res.Nulls = append(res.Nulls, nulls)
		}
		if out.NextToken == nil || *out.NextToken == "" {
			return res, nil
		}
		token = out.NextToken
	}
}

// Run submits sql, waits for it and returns its rows (header dropped).
func (c *Client) Run(ctx context.Context, sql string) (*Result, error) {
	id, err := c.Start(ctx, sql)
	if err != nil {
		return nil, err
	}
	return c.Collect(ctx, id)
}

// Collect waits for a started query and returns its rows (header dropped).
func (c *Client) Collect(ctx context.Context, id string) (*Result, error) {
	qe, err := c.Wait(ctx, id)
	if err != nil {
		return nil, err
	}
	res, err := c.Results(ctx, id, true)
	if err != nil {
		return nil, err
	}
	if qe.Statistics != nil {
		res.ScannedBytes = aws.ToInt64(qe.Statistics.DataScannedInBytes)
	}
	if qe.ResultConfiguration != nil {
		res.OutputLocation = aws.ToString(qe.ResultConfiguration.OutputLocation)
	}
	return res, nil
}

// Exec submits a statement with no rows to read (DDL, UNLOAD) and waits for it.
func (c *Client) Exec(ctx context.Context, sql string) (*types.QueryExecution, error) {
	id, err := c.Start(ctx, sql)
	if err != nil {
		return nil, err
	}
	return c.Wait(ctx, id)
}

// New returns a Client with the SDK's default configuration: AWS_REGION,
// credentials, and AWS_ENDPOINT_URL_ATHENA (or AWS_ENDPOINT_URL) for a local
// server such as internal/athenalocal.
func New(ctx context.Context, c Client) (*Client, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("athena: loading AWS configuration: %w", err)
	}
	c.API = athena.NewFromConfig(cfg)
	return &c, nil
}
