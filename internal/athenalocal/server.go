// Package athenalocal is a local query server that speaks the Amazon Athena
// API (AWS JSON 1.1, X-Amz-Target: AmazonAthena.*) and runs the SQL in
// DuckDB over files on disk. The real aws-sdk-go-v2 Athena client talks to it
// unchanged:
//
//	AWS_ENDPOINT_URL_ATHENA=http://127.0.0.1:PORT
//
// It exists so that meter's Athena compaction is tested over the real
// protocol against a real SQL engine, the way bedrocklocal stands in for
// Bedrock. What is faithful: the operations StartQueryExecution,
// GetQueryExecution, GetQueryResults (the first row of a SELECT holds the
// column names; cells are strings, NULL has no value; pages of at most 1,000
// rows with NextToken), StopQueryExecution, the query states and the error
// shape. Tables are declared as in Athena, with CREATE EXTERNAL TABLE ...
// LOCATION 's3://...' (Parquet with Hive partitions, or CSV through
// OpenCSVSerde); Config.Locations maps their s3:// locations to directories
// (a file store's, or versitygw's posix directory), so queries read the same
// objects the pipeline wrote. UNLOAD (SELECT ...) TO 's3://...' writes
// Parquet there, partitioned as asked. Each table also has Athena's "$path"
// column (the object's s3:// URI).
//
// What differs: the SQL runs in DuckDB, with the few Trino functions meter's
// queries use added as macros; partition projection is implied (every
// partition directory is read); DataScannedInBytes is the size of the files
// of the tables a query names, an upper bound of what Athena would scan;
// no request is authenticated. A test tool: it reads any file its SQL names,
// so it listens on 127.0.0.1 only and is never deployed.
package athenalocal

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "github.com/duckdb/duckdb-go/v2" // the SQL engine
)

// Config configures a Server.
type Config struct {
	// Locations maps s3:// prefixes ("s3://bucket/" or "s3://bucket/prefix/")
	// to directories; the longest matching prefix wins.
	Locations map[string]string
	// DefaultOutputLocation is where results go when neither the query nor its
	// workgroup names a location (default s3://athena-local-results/).
	DefaultOutputLocation string
	Logger                *slog.Logger
}

// Server is the local Athena API.
type Server struct {
	cfg  Config
	db   *sql.DB
	run  sync.Mutex // one statement at a time: views are redefined per query
	mu   sync.Mutex
	tabs map[string]*table
	qs   map[string]*query
	ids  []string // in submission order, for bounding the kept queries
}

// maxKeptQueries bounds the finished queries (and their rows) kept in memory.
const maxKeptQueries = 1000

type query struct {
	id, sql, workgroup, database, output string
	state, reason                        string
	submitted, completed                 time.Time
	scanned                              int64
	statementType                        string
	cols                                 []column
	rows                                 [][]*string
}

type column struct{ name, typ string }

// New opens the engine. Close releases it.
func New(cfg Config) (*Server, error) {
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1) // one session: its settings and macros hold for every query
	for _, q := range []string{
		`SET TimeZone = 'UTC'`,
		`CREATE MACRO from_iso8601_timestamp(s) AS CAST(s AS TIMESTAMPTZ)`,
	} {
		if _, err := db.Exec(q); err != nil {
			db.Close()
			return nil, fmt.Errorf("preparing duckdb: %w", err)
		}
	}
	if cfg.DefaultOutputLocation == "" {
		cfg.DefaultOutputLocation = "s3://athena-local-results/"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Server{cfg: cfg, db: db, tabs: map[string]*table{}, qs: map[string]*query{}}, nil
}

// Close waits for the running statement and closes the engine.
func (s *Server) Close() error {
	s.run.Lock()
	defer s.run.Unlock()
	return s.db.Close()
}

// apiError is an Athena error answer.
type apiError struct {
	status int
	typ    string
	msg    string
}

func (e *apiError) Error() string { return e.typ + ": " + e.msg }

func invalid(format string, a ...any) *apiError {
	return &apiError{http.StatusBadRequest, "InvalidRequestException", fmt.Sprintf(format, a...)}
}

// maxBody bounds a request body (a query string is at most 262,144 bytes in Athena).
const maxBody = 1 << 20

// ServeHTTP answers the Athena API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeErr(w, &apiError{http.StatusMethodNotAllowed, "InvalidRequestException", "use POST"})
		return
	}
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, "AmazonAthena.")
	if !ok {
		writeErr(w, &apiError{http.StatusBadRequest, "UnknownOperationException", fmt.Sprintf("unknown target %q", target)})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		writeErr(w, invalid("request body unreadable or larger than %d bytes", maxBody))
		return
	}
	var out any
	switch op {
	case "StartQueryExecution":
		out, err = s.start(body)
	case "GetQueryExecution":
		out, err = s.getExecution(body)
	case "GetQueryResults":
		out, err = s.getResults(body)
	case "StopQueryExecution":
		out, err = s.stop(body)
	default:
		err = &apiError{http.StatusBadRequest, "UnknownOperationException", fmt.Sprintf("operation %s is not served here", op)}
	}
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			ae = &apiError{http.StatusInternalServerError, "InternalServerException", err.Error()}
		}
		writeErr(w, ae)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	json.NewEncoder(w).Encode(out)
}

func writeErr(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", e.typ)
	w.WriteHeader(e.status)
	json.NewEncoder(w).Encode(map[string]string{"__type": e.typ, "Message": e.msg})
}

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func (s *Server) start(body []byte) (any, error) {
	var in struct {
		QueryString           string
		WorkGroup             string
		QueryExecutionContext struct{ Database, Catalog string }
		ResultConfiguration   struct{ OutputLocation string }
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, invalid("malformed request: %v", err)
	}
	if strings.TrimSpace(in.QueryString) == "" {
		return nil, invalid("QueryString is required")
	}
	out := in.ResultConfiguration.OutputLocation
	if out == "" {
		out = s.cfg.DefaultOutputLocation
	}
	if !strings.HasPrefix(out, "s3://") {
		return nil, invalid("OutputLocation %q is not an s3:// location", out)
	}
	if !strings.HasSuffix(out, "/") {
		out += "/"
	}
	wg := in.WorkGroup
	if wg == "" {
		wg = "primary"
	}
	q := &query{id: newID(), sql: in.QueryString, workgroup: wg, database: in.QueryExecutionContext.Database,
		output: out, state: "QUEUED", submitted: time.Now()}
	s.mu.Lock()
	s.qs[q.id] = q
	s.ids = append(s.ids, q.id)
	for len(s.ids) > maxKeptQueries {
		delete(s.qs, s.ids[0])
		s.ids = s.ids[1:]
	}
	s.mu.Unlock()
	go s.execute(q)
	return map[string]string{"QueryExecutionId": q.id}, nil
}

func (s *Server) lookup(body []byte) (*query, error) {
	var in struct{ QueryExecutionId string }
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, invalid("malformed request: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.qs[in.QueryExecutionId]
	if q == nil {
		return nil, invalid("QueryExecution %s was not found", in.QueryExecutionId)
	}
	return q, nil
}

func (s *Server) stop(body []byte) (any, error) {
	q, err := s.lookup(body)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if q.state == "QUEUED" {
		q.state, q.reason, q.completed = "CANCELLED", "Query was cancelled by the user", time.Now()
	}
	s.mu.Unlock()
	return map[string]any{}, nil
}

func epoch(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func (s *Server) getExecution(body []byte) (any, error) {
	q, err := s.lookup(body)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	status := map[string]any{"State": q.state, "SubmissionDateTime": epoch(q.submitted)}
	if !q.completed.IsZero() {
		status["CompletionDateTime"] = epoch(q.completed)
	}
	if q.reason != "" {
		status["StateChangeReason"] = q.reason
	}
	stmt := q.statementType
	if stmt == "" {
		stmt = "DML"
	}
	qe := map[string]any{
		"QueryExecutionId":    q.id,
		"Query":               q.sql,
		"StatementType":       stmt,
		"WorkGroup":           q.workgroup,
		"ResultConfiguration": map[string]any{"OutputLocation": q.output + q.id + ".csv"},
		"Status":              status,
		"Statistics": map[string]any{"DataScannedInBytes": q.scanned,
			"EngineExecutionTimeInMillis": q.completed.Sub(q.submitted).Milliseconds()},
		"EngineVersion": map[string]string{"SelectedEngineVersion": "AUTO", "EffectiveEngineVersion": "Athena engine version 3"},
	}
	if q.database != "" {
		qe["QueryExecutionContext"] = map[string]string{"Database": q.database, "Catalog": "AwsDataCatalog"}
	}
	if q.completed.IsZero() {
		delete(qe["Statistics"].(map[string]any), "EngineExecutionTimeInMillis")
	}
	return map[string]any{"QueryExecution": qe}, nil
}

func (s *Server) getResults(body []byte) (any, error) {
	var in struct {
		QueryExecutionId string
		NextToken        string
		MaxResults       int
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, invalid("malformed request: %v", err)
	}
	q, err := s.lookup(body)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	state, reason := q.state, q.reason
	s.mu.Unlock()
	switch state {
	case "SUCCEEDED":
	case "FAILED", "CANCELLED":
		return nil, invalid("Query has not yet finished. Current state: %s (%s)", state, reason)
	default:
		return nil, invalid("Query has not yet finished. Current state: %s", state)
	}
	max := in.MaxResults
	if max <= 0 || max > 1000 {
		max = 1000
	}
	// Row 0 of a SELECT's results is its header.
	all := q.rows
	if q.statementType == "DML" && q.cols != nil {
		hdr := make([]*string, len(q.cols))
		for i := range q.cols {
			hdr[i] = &q.cols[i].name
		}
		all = append([][]*string{hdr}, q.rows...)
	}
	from := 0
	if in.NextToken != "" {
		if from, err = strconv.Atoi(in.NextToken); err != nil || from < 0 || from > len(all) {
			return nil, invalid("NextToken %q is not valid", in.NextToken)
		}
	}
	to := min(from+max, len(all))
	rows := make([]any, 0, to-from)
	for _, r := range all[from:to] {
		data := make([]any, len(r))
		for i, v := range r {
			if v == nil {
				data[i] = map[string]any{}
			} else {
				data[i] = map[string]string{"VarCharValue": *v}
			}
		}
		rows = append(rows, map[string]any{"Data": data})
	}
	info := make([]any, len(q.cols))
	for i, c := range q.cols {
		info[i] = map[string]any{"CatalogName": "hive", "SchemaName": "", "TableName": "", "Name": c.name, "Label": c.name,
			"Type": c.typ, "Nullable": "UNKNOWN", "CaseSensitive": c.typ == "varchar", "Precision": 0, "Scale": 0}
	}
	out := map[string]any{"ResultSet": map[string]any{"Rows": rows, "ResultSetMetadata": map[string]any{"ColumnInfo": info}},
		"UpdateCount": 0}
	if to < len(all) {
		out["NextToken"] = strconv.Itoa(to)
	}
	return out, nil
}

// execute runs one query to its end.
func (s *Server) execute(q *query) {
	s.run.Lock()
	defer s.run.Unlock()
	s.mu.Lock()
	if q.state != "QUEUED" {
		s.mu.Unlock()
		return
	}
	q.state = "RUNNING"
	s.mu.Unlock()
	stmtType, cols, rows, scanned, err := s.runSQL(context.Background(), q.sql)
	if err == nil && stmtType == "DML" {
		err = s.writeResultFile(q, cols, rows)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q.completed, q.scanned, q.statementType = time.Now(), scanned, stmtType
	if err != nil {
		q.state, q.reason = "FAILED", err.Error()
		s.cfg.Logger.Info("query failed", "id", q.id, "error", err)
		return
	}
	q.state, q.cols, q.rows = "SUCCEEDED", cols, rows
}

// writeResultFile writes a SELECT's rows as CSV to its output location, as
// Athena does, when that location maps to a directory.
func (s *Server) writeResultFile(q *query, cols []column, rows [][]*string) error {
	dir, err := s.dir(q.output)
	if err != nil {
		return nil // results stay in memory only
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, q.id+".csv"))
	if err != nil {
		return err
	}
	cw := csv.NewWriter(f)
	cw.UseCRLF = false
	hdr := make([]string, len(cols))
	for i, c := range cols {
		hdr[i] = c.name
	}
	cw.Write(hdr)
	for _, r := range rows {
		rec := make([]string, len(r))
		for i, v := range r {
			if v != nil {
				rec[i] = *v
			}
		}
		cw.Write(rec)
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// dir maps an s3:// URI to a directory by the longest configured prefix.
func (s *Server) dir(uri string) (string, error) {
	best := ""
	for p := range s.cfg.Locations {
		pp := p
		if !strings.HasSuffix(pp, "/") {
			pp += "/"
		}
		if (strings.HasPrefix(uri, pp) || uri+"/" == pp) && len(pp) > len(best) {
			best = pp
		}
	}
	if best == "" {
		return "", fmt.Errorf("location %s is not mapped to a directory of this server", uri)
	}
	base := s.cfg.Locations[best]
	if base == "" {
		base = s.cfg.Locations[strings.TrimSuffix(best, "/")]
	}
	rest := strings.TrimPrefix(strings.TrimPrefix(uri, best), "/")
	if uri+"/" == best {
		rest = ""
	}
	for _, part := range strings.Split(rest, "/") {
		if part == ".." {
			return "", fmt.Errorf("location %s climbs out of its bucket", uri)
		}
	}
	return filepath.Join(base, filepath.FromSlash(rest)), nil
}

// uri maps a file back to its s3:// URI (the inverse of dir).
func (s *Server) uri(path string) string {
	best, bestDir := "", ""
	for p, d := range s.cfg.Locations {
		d = filepath.Clean(d)
		if (path == d || strings.HasPrefix(path, d+string(filepath.Separator))) && len(d) > len(bestDir) {
			best, bestDir = p, d
		}
	}
	if bestDir == "" {
		return path
	}
	if !strings.HasSuffix(best, "/") {
		best += "/"
	}
	return best + filepath.ToSlash(strings.TrimPrefix(strings.TrimPrefix(path, bestDir), string(filepath.Separator)))
}

// sortedTables returns the declared tables by name.
func (s *Server) sortedTables() []*table {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*table, 0, len(s.tabs))
	for _, t := range s.tabs {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}
