package athenalocal

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"
)

// table is a declared external table.
type table struct {
	name      string
	location  string // s3://.../
	format    string // "parquet" or "csv"
	cols      []column
	partition []column
	delim     string
}

var (
	reCreate  = regexp.MustCompile(`(?is)^CREATE\s+EXTERNAL\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?` + "`?" + `([A-Za-z_][\w.]*)` + "`?" + `\s*\(`)
	reLoc     = regexp.MustCompile(`(?is)\bLOCATION\s+'([^']+)'`)
	reDrop    = regexp.MustCompile(`(?is)^DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?` + "`?" + `([A-Za-z_][\w.]*)` + "`?" + `\s*$`)
	rePart    = regexp.MustCompile(`(?is)\bPARTITIONED\s+BY\s*\(`)
	reSep     = regexp.MustCompile(`(?is)'separatorChar'\s*=\s*'([^']*)'`)
	reUnload  = regexp.MustCompile(`(?is)^UNLOAD\s*\(`)
	reTo      = regexp.MustCompile(`(?is)^\s*TO\s+'([^']+)'\s*(?:WITH\s*\((.*)\))?\s*$`)
	reProp    = regexp.MustCompile(`(?is)(\w+)\s*=\s*(ARRAY\s*\[[^\]]*\]|'[^']*')`)
	reTypeDec = regexp.MustCompile(`(?i)^decimal\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)$`)
	reIdent   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// stripComments drops leading blank lines and -- comments, and trailing semicolons.
func stripComments(q string) string {
	q = strings.TrimSpace(q)
	for strings.HasPrefix(q, "--") {
		i := strings.IndexByte(q, '\n')
		if i < 0 {
			return ""
		}
		q = strings.TrimSpace(q[i+1:])
	}
	return strings.TrimRight(q, "; \t\r\n")
}

// runSQL runs one statement: DDL declares tables, UNLOAD writes files, any
// other statement is a query whose rows are returned as Athena's strings.
func (s *Server) runSQL(ctx context.Context, q string) (stmtType string, cols []column, rows [][]*string, scanned int64, err error) {
	q = stripComments(q)
	switch {
	case reCreate.MatchString(q):
		return "DDL", nil, nil, 0, s.createTable(q)
	case reDrop.MatchString(q):
		name := strings.ToLower(reDrop.FindStringSubmatch(q)[1])
		s.mu.Lock()
		delete(s.tabs, name)
		s.mu.Unlock()
		return "DDL", nil, nil, 0, nil
	}
	scanned, err = s.defineViews(ctx, q)
	if err != nil {
		return "", nil, nil, 0, err
	}
	if reUnload.MatchString(q) {
		return "DML", nil, nil, scanned, s.unload(ctx, q)
	}
	cols, rows, err = s.query(ctx, q)
	return "DML", cols, rows, scanned, err
}

// createTable registers CREATE EXTERNAL TABLE name (cols) [PARTITIONED BY
// (cols)] ... LOCATION 's3://...'.
func (s *Server) createTable(q string) error {
	m := reCreate.FindStringSubmatchIndex(q)
	name := strings.ToLower(q[m[2]:m[3]])
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		name = name[i+1:] // database.table: one namespace here
	}
	body, rest, err := balanced(q[m[1]-1:])
	if err != nil {
		return err
	}
	t := &table{name: name, delim: ","}
	if t.cols, err = parseColumns(body); err != nil {
		return fmt.Errorf("table %s: %w", name, err)
	}
	if pm := rePart.FindStringIndex(rest); pm != nil {
		pbody, _, err := balanced(rest[pm[1]-1:])
		if err != nil {
			return err
		}
		if t.partition, err = parseColumns(pbody); err != nil {
			return fmt.Errorf("table %s partitions: %w", name, err)
		}
	}
	lm := reLoc.FindStringSubmatch(rest)
	if lm == nil {
		return fmt.Errorf("table %s: LOCATION 's3://...' is required", name)
	}
	t.location = lm[1]
	if !strings.HasSuffix(t.location, "/") {
		t.location += "/"
	}
	if _, err := s.dir(t.location); err != nil {
		return err
	}
	upper := strings.ToUpper(rest)
	switch {
	case strings.Contains(upper, "STORED AS PARQUET"):
		t.format = "parquet"
	case strings.Contains(upper, "OPENCSVSERDE"), strings.Contains(upper, "STORED AS TEXTFILE"):
		t.format = "csv"
		if sm := reSep.FindStringSubmatch(rest); sm != nil && sm[1] != "" {
			t.delim = sm[1]
		}
	default:
		return fmt.Errorf("table %s: only STORED AS PARQUET and CSV text tables are served here", name)
	}
	s.mu.Lock()
	s.tabs[name] = t
	s.mu.Unlock()
	return nil
}

// balanced splits "(inner) rest" at the parenthesis matching the first,
// skipping quoted text.
func balanced(s string) (inner, rest string, err error) {
	if !strings.HasPrefix(s, "(") {
		return "", "", fmt.Errorf("expected ( at %.20q", s)
	}
	depth := 0
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"' || c == '`':
			quote = c
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth == 0 {
				return s[1:i], s[i+1:], nil
			}
		}
	}
	return "", "", fmt.Errorf("unbalanced parentheses")
}

// splitTop splits s at commas outside parentheses.
func splitTop(s string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

func parseColumns(body string) ([]column, error) {
	var cols []column
	for _, part := range splitTop(body) {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, typ, ok := strings.Cut(part, " ")
		name = strings.Trim(name, "`\"")
		typ = strings.TrimSpace(typ)
		if !ok || !reIdent.MatchString(name) || typ == "" {
			return nil, fmt.Errorf("column %q: want `name type`", part)
		}
		if _, err := duckType(typ); err != nil {
			return nil, fmt.Errorf("column %s: %w", name, err)
		}
		cols = append(cols, column{strings.ToLower(name), strings.ToLower(typ)})
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("no columns")
	}
	return cols, nil
}

// duckType maps a Hive column type to DuckDB's.
func duckType(t string) (string, error) {
	if m := reTypeDec.FindStringSubmatch(t); m != nil {
		return "DECIMAL(" + m[1] + "," + m[2] + ")", nil
	}
	switch strings.ToLower(t) {
	case "string", "varchar":
		return "VARCHAR", nil
	case "int", "integer":
		return "INTEGER", nil
	case "bigint":
		return "BIGINT", nil
	case "smallint":
		return "SMALLINT", nil
	case "tinyint":
		return "TINYINT", nil
	case "double":
		return "DOUBLE", nil
	case "float":
		return "FLOAT", nil
	case "boolean":
		return "BOOLEAN", nil
	case "timestamp":
		return "TIMESTAMP", nil
	case "date":
		return "DATE", nil
	}
	return "", fmt.Errorf("type %q is not served here", t)
}

func sqlString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// files lists a table's data files: every file under its directory whose
// name does not start with _ or . (as Hive skips them).
func files(dir string) ([]string, int64, error) {
	var out []string
	var size int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && p == dir {
				return filepath.SkipDir
			}
			return err
		}
		n := d.Name()
		if p != dir && (strings.HasPrefix(n, "_") || strings.HasPrefix(n, ".")) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.IsDir() {
			out = append(out, p)
			if fi, err := d.Info(); err == nil {
				size += fi.Size()
			}
		}
		return nil
	})
	return out, size, err
}

var reWord = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*`)

// defineViews (re)defines a view for every declared table over the files now
// in its location, and returns the size of the files of the tables q names.
func (s *Server) defineViews(ctx context.Context, q string) (int64, error) {
	named := map[string]bool{}
	for _, w := range reWord.FindAllString(q, -1) {
		named[strings.ToLower(w)] = true
	}
	var scanned int64
	for _, t := range s.sortedTables() {
		dir, err := s.dir(t.location)
		if err != nil {
			return 0, err
		}
		fl, size, err := files(dir)
		if err != nil {
			return 0, fmt.Errorf("listing %s: %w", t.location, err)
		}
		if named[t.name] {
			scanned += size
		}
		view, err := s.viewSQL(t, dir, fl)
		if err != nil {
			return 0, err
		}
		if _, err := s.db.ExecContext(ctx, "CREATE OR REPLACE VIEW "+quoteIdent(t.name)+" AS "+view); err != nil {
			return 0, fmt.Errorf("table %s: %w", t.name, err)
		}
	}
	return scanned, nil
}

func (s *Server) viewSQL(t *table, dir string, fl []string) (string, error) {
	var sel []string
	all := append(append([]column{}, t.cols...), t.partition...)
	if len(fl) == 0 {
		for _, c := range all {
			dt, _ := duckType(c.typ)
			sel = append(sel, "CAST(NULL AS "+dt+") AS "+quoteIdent(c.name))
		}
		sel = append(sel, `CAST(NULL AS VARCHAR) AS "$path"`)
		return "SELECT " + strings.Join(sel, ", ") + " WHERE false", nil
	}
	list := make([]string, len(fl))
	for i, f := range fl {
		list[i] = sqlString(f)
	}
	files := "[" + strings.Join(list, ", ") + "]"
	for _, c := range all {
		dt, _ := duckType(c.typ)
		sel = append(sel, "CAST("+quoteIdent(c.name)+" AS "+dt+") AS "+quoteIdent(c.name))
	}
	base := filepath.Clean(dir) + string(filepath.Separator)
	sel = append(sel, sqlString(t.location)+" || substr(filename, "+strconv.Itoa(len(base)+1)+`) AS "$path"`)
	switch t.format {
	case "parquet":
		var hive []string
		for _, p := range t.partition {
			dt, _ := duckType(p.typ)
			hive = append(hive, sqlString(p.name)+": "+dt)
		}
		opts := "union_by_name = true, filename = true"
		if len(hive) > 0 {
			opts += ", hive_partitioning = true, hive_types = {" + strings.Join(hive, ", ") + "}"
		} else {
			opts += ", hive_partitioning = false"
		}
		return "SELECT " + strings.Join(sel, ", ") + " FROM read_parquet(" + files + ", " + opts + ")", nil
	default:
		var cols []string
		for _, c := range t.cols {
			cols = append(cols, sqlString(c.name)+": 'VARCHAR'")
		}
		return "SELECT " + strings.Join(sel, ", ") + " FROM read_csv(" + files + ", header = false, all_varchar = true, auto_detect = false, " +
			"delim = " + sqlString(t.delim) + `, quote = '"', null_padding = true, strict_mode = false, filename = true, ` +
			"columns = {" + strings.Join(cols, ", ") + "})", nil
	}
}

// unload runs UNLOAD (SELECT ...) TO 's3://...' WITH (format = 'PARQUET',
// partitioned_by = ARRAY['col']) as a DuckDB COPY. As in Athena, an
// unpartitioned UNLOAD needs an empty location; a partitioned one adds files.
func (s *Server) unload(ctx context.Context, q string) error {
	m := reUnload.FindStringIndex(q)
	inner, rest, err := balanced(q[m[1]-1:])
	if err != nil {
		return err
	}
	tm := reTo.FindStringSubmatch(rest)
	if tm == nil {
		return fmt.Errorf("UNLOAD: want TO 's3://...' [WITH (...)] after the query")
	}
	dir, err := s.dir(tm[1])
	if err != nil {
		return err
	}
	format, compression := "PARQUET", "SNAPPY"
	var partitions []string
	for _, p := range reProp.FindAllStringSubmatch(tm[2], -1) {
		key, val := strings.ToLower(p[1]), p[2]
		switch key {
		case "format":
			format = strings.ToUpper(strings.Trim(val, "'"))
		case "compression":
			compression = strings.ToUpper(strings.Trim(val, "'"))
		case "partitioned_by":
			for _, item := range strings.Split(val[strings.IndexByte(val, '[')+1:len(val)-1], ",") {
				item = strings.Trim(strings.TrimSpace(item), "'")
				if !reIdent.MatchString(item) {
					return fmt.Errorf("UNLOAD: partition column %q", item)
				}
				partitions = append(partitions, quoteIdent(item))
			}
		default:
			return fmt.Errorf("UNLOAD: property %s is not served here", key)
		}
	}
	if format != "PARQUET" {
		return fmt.Errorf("UNLOAD: only format 'PARQUET' is served here")
	}
	if len(partitions) == 0 {
		if fl, _, _ := files(dir); len(fl) > 0 {
			return fmt.Errorf("HIVE_PATH_ALREADY_EXISTS: Target directory for table already exists: %s. You may need to manually clean the data at location before retrying", tm[1])
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	opts := "FORMAT parquet, COMPRESSION " + strings.ToLower(compression)
	stmt := "COPY (" + inner + ") TO "
	if len(partitions) > 0 {
		opts += ", PARTITION_BY (" + strings.Join(partitions, ", ") + "), APPEND true, FILENAME_PATTERN 'data_{uuid}'"
		stmt += sqlString(dir)
	} else {
		stmt += sqlString(filepath.Join(dir, fmt.Sprintf("data_%d.parquet", time.Now().UnixNano())))
	}
	_, err = s.db.ExecContext(ctx, stmt+" ("+opts+")")
	return err
}

// query runs a SELECT and renders each value as Athena would in its results.
func (s *Server) query(ctx context.Context, q string) ([]column, [][]*string, error) {
	rs, err := s.db.QueryContext(ctx, q)
	if err != nil {
		return nil, nil, err
	}
	defer rs.Close()
	types, err := rs.ColumnTypes()
	if err != nil {
		return nil, nil, err
	}
	cols := make([]column, len(types))
	for i, ct := range types {
		cols[i] = column{ct.Name(), athenaType(ct.DatabaseTypeName())}
	}
	var rows [][]*string
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rs.Next() {
		if err := rs.Scan(ptrs...); err != nil {
			return nil, nil, err
		}
		row := make([]*string, len(cols))
		for i, v := range vals {
			row[i] = render(v)
		}
		rows = append(rows, row)
	}
	return cols, rows, rs.Err()
}

func athenaType(t string) string {
	t = strings.ToUpper(t)
	switch {
	case strings.HasPrefix(t, "DECIMAL"):
		return "decimal"
	case t == "VARCHAR":
		return "varchar"
	case t == "BIGINT", t == "HUGEINT", t == "UBIGINT":
		return "bigint"
	case t == "INTEGER":
		return "integer"
	case t == "BOOLEAN":
		return "boolean"
	case t == "DOUBLE", t == "FLOAT":
		return "double"
	case strings.HasPrefix(t, "TIMESTAMP"):
		return "timestamp"
	case t == "DATE":
		return "date"
	}
	return strings.ToLower(t)
}

// render formats a value as Athena's results do; nil is NULL.
func render(v any) *string {
	var s string
	switch x := v.(type) {
	case nil:
		return nil
	case duckdb.Decimal:
		s = x.String()
	case *big.Int:
		s = x.String()
	case []byte:
		s = string(x)
	case string:
		s = x
	case bool:
		s = strconv.FormatBool(x)
	case time.Time:
		s = x.UTC().Format("2006-01-02 15:04:05.000")
	case float64:
		s = strconv.FormatFloat(x, 'g', -1, 64)
	case float32:
		s = strconv.FormatFloat(float64(x), 'g', -1, 32)
	default:
		s = fmt.Sprint(v)
	}
	return &s
}

// QueryText runs q on db and returns its rows as text, each value rendered
// as Athena's results render it (decimals exactly, NULL as ""): the form in
// which tests and benchmarks compare DuckDB's answers with meter's CSVs.
func QueryText(ctx context.Context, db *sql.DB, q string) ([][]string, error) {
	rs, err := db.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	cols, err := rs.Columns()
	if err != nil {
		return nil, err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var out [][]string
	for rs.Next() {
		if err := rs.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make([]string, len(cols))
		for i, v := range vals {
			if s := render(v); s != nil {
				row[i] = *s
			}
		}
		out = append(out, row)
	}
	return out, rs.Err()
}
