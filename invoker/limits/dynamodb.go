package limits

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/internal/metrics"
	"github.com/meter-dev/meter/invoker/tenants"
)

// The limits table: one item per team, partition key only. This is the one
// description of its shape; infra/limits-table.json and the deployment read
// it from here.
const (
	// TableKey is the partition key (type S): "team#" and the team id.
	TableKey = "pk"
	// TableTTL is the TTL attribute (type N, epoch seconds): a team's item is
	// deleted when it has made no call for a whole calendar month after the
	// one its counters are in. Leases never rely on it (DynamoDB's TTL
	// deletes late and lazily): they are checked in the conditional updates.
	TableTTL = "expires_at"
)

// Attributes of a team's item.
const (
	attrDay          = "d"  // S: UTC day of the quota counters
	attrRequests     = "rq" // N: calls admitted that day
	attrTokensHeld   = "tc" // N: tokens used that day plus tokens reserved by calls in flight
	attrTokensUsed   = "tu" // N: tokens used that day
	attrMonth        = "m"  // S: UTC month of the budget counters
	attrCostHeld     = "cc" // N: USD spent that month plus USD reserved by calls in flight
	attrCostUsed     = "cu" // N: USD spent that month
	attrReservations = "r"  // M: reservation id -> {d, m, t, c, e, s}
	resDay, resMonth = "d", "m"
	resTokens        = "t"
	resCost          = "c"
	resExpires       = "e" // N: the lease's end, Unix milliseconds
	resState         = "s" // S: held | released (its lease ran out before it was settled)
	stateHeld        = "h"
	stateReleased    = "x"
)

// DynamoDBAPI is the part of the DynamoDB client the limits use;
// *dynamodb.Client implements it.
type DynamoDBAPI interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
}

// DynamoDBConfig configures DynamoDB limits.
type DynamoDBConfig struct {
	Client DynamoDBAPI // required
	Table  string      // required
	// Lease is how long a reservation holds without being settled or
	// renewed (default 15m). An instance renews the leases of its calls in
	// flight every third of it; once one has run out, the next call that
	// would be refused releases it, so a reservation of an instance that died
	// mid-call holds the team's quota and budget for at most this long.
	Lease time.Duration
	// FailOpen admits calls of teams with quotas or budgets while the table
	// cannot be reached (their usage is added when it can be again). The
	// default, false, refuses them: ErrUnavailable, 503 to the caller.
	FailOpen bool
	// Timeout bounds each call to the table (default 3s).
	Timeout time.Duration
	Now     func() time.Time // lease clock; default time.Now
	Logger  *slog.Logger
}

// DynamoDB keeps quotas and budgets in a DynamoDB table shared by every
// invoker instance, with atomic conditional updates: admitting a call is one
// UpdateItem whose condition says the call's bound still fits, so concurrent
// instances can never together admit more than a limit. Rate limits stay in
// each process (Rate).
type DynamoDB struct {
	cfg  DynamoDBConfig
	log  *slog.Logger
	rate Rate

	storeErrors, leasesExpired, admittedOpen atomic.Int64

	wg     sync.WaitGroup
	closed chan struct{}
	once   sync.Once
}

// NewDynamoDB checks cfg and returns DynamoDB limits.
func NewDynamoDB(cfg DynamoDBConfig) (*DynamoDB, error) {
	if cfg.Client == nil || cfg.Table == "" {
		return nil, errors.New("limits: DynamoDB needs a client and a table")
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 15 * time.Minute
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 3 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &DynamoDB{cfg: cfg, log: log, closed: make(chan struct{})}, nil
}

// ParseURI reads a --limits location: "memory", or
// "dynamodb://TABLE[?lease=15m&unavailable=closed|open]".
func ParseURI(uri string) (table string, lease time.Duration, failOpen bool, err error) {
	rest, ok := strings.CutPrefix(uri, "dynamodb://")
	if !ok {
		return "", 0, false, fmt.Errorf("limits %q: want memory or dynamodb://TABLE", uri)
	}
	table, query, _ := strings.Cut(rest, "?")
	if !validTable(table) {
		return "", 0, false, fmt.Errorf("limits %q: a DynamoDB table name is 3 to 255 characters of a-z A-Z 0-9 _ - .", uri)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", 0, false, fmt.Errorf("limits %q: %v", uri, err)
	}
	for k := range q {
		if k != "lease" && k != "unavailable" {
			return "", 0, false, fmt.Errorf("limits %q: unknown option %q (want lease, unavailable)", uri, k)
		}
	}
	if v := q.Get("lease"); v != "" {
		if lease, err = time.ParseDuration(v); err != nil || lease < time.Second || lease > 24*time.Hour {
			return "", 0, false, fmt.Errorf("limits %q: lease must be a duration from 1s to 24h", uri)
		}
	}
	switch q.Get("unavailable") {
	case "", "closed":
	case "open":
		failOpen = true
	default:
		return "", 0, false, fmt.Errorf("limits %q: unavailable must be closed or open", uri)
	}
	return table, lease, failOpen, nil
}

func validTable(t string) bool {
	if len(t) < 3 || len(t) > 255 {
		return false
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// Close stops retrying settlements that failed while the table was unreachable.
func (l *DynamoDB) Close() error {
	l.once.Do(func() { close(l.closed) })
	l.wg.Wait()
	return nil
}

// Stats are the store's running counts, exported as metrics.
func (l *DynamoDB) Stats() metrics.LimitsStats {
	return metrics.LimitsStats{StoreErrors: l.storeErrors.Load(), LeasesExpired: l.leasesExpired.Load(), AdmittedOpen: l.admittedOpen.Load()}
}

func limited(team *tenants.Team) bool {
	return team.Quotas.DailyRequests > 0 || team.Quotas.DailyTokens > 0 || team.MonthlyBudgetUSD != nil
}

func newReservationID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// item is a team's item as read.
type item struct {
	day, month       string
	requests         int64
	tokHeld, tokUsed int64
	costHeld, spent  decimal.Decimal
	res              map[string]reservation
}

type reservation struct {
	day, month string
	tokens     int64
	cost       decimal.Decimal
	expires    int64
	state      string
}

func (l *DynamoDB) key(team string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{TableKey: &types.AttributeValueMemberS{Value: "team#" + team}}
}

func n(v int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}
func nd(v decimal.Decimal) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: v.String()}
}
func s(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }

// expiresAt is the item's TTL: the first day of the month after the next.
func expiresAt(now time.Time) int64 {
	return time.Date(now.Year(), now.Month()+2, 1, 0, 0, 0, 0, time.UTC).Unix()
}

var errConflict = errors.New("limits: the team's item changed meanwhile")

func isConditionFailed(err error) bool {
	var cf *types.ConditionalCheckFailedException
	return errors.As(err, &cf)
}

// unavailable counts and wraps an error of the table.
func (l *DynamoDB) unavailable(op string, err error) error {
	l.storeErrors.Add(1)
	l.log.Error("limits table unreachable", "op", op, "table", l.cfg.Table, "err", err)
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, op, err)
}

// Admit implements Limits.
func (l *DynamoDB) Admit(ctx context.Context, team *tenants.Team, now time.Time, bound Usage) (*Ticket, error) {
	// A caller that leaves does not cut an update short (each is bounded by
	// Timeout): it would count as the table's error and leave the item unsure.
	ctx = context.WithoutCancel(ctx)
	now = now.UTC()
	bound.Tokens = max(bound.Tokens, 0)
	bound.Cost = decimal.Max(bound.Cost, decimal.Zero)
	t := &Ticket{TeamID: team.ID, Day: now.Format(dayLayout), Month: now.Format(monthLayout)}
	if err := l.rate.check(team, now); err != nil {
		return nil, err
	}
	if !limited(team) {
		l.rate.take(team, now)
		return t, nil
	}
	// A bound over the whole limit fails the update's condition like any
	// other that does not fit, so the refusal can say what is left.
	if team.Quotas.DailyTokens > 0 {
		t.tokens = bound.Tokens
	}
	if team.MonthlyBudgetUSD != nil {
		t.cost = bound.Cost
	}
	t.id = newReservationID()
	l.rate.take(team, now)
	for attempt := 0; attempt < 16; attempt++ {
		err := l.reserve(ctx, team, t, now)
		if err == nil {
			t.stored = true
			t.done = make(chan struct{})
			l.wg.Add(1)
			go l.renew(t)
			return t, nil
		}
		var le *Error
		switch {
		case errors.As(err, &le):
			l.rate.give(team)
			return nil, err
		case errors.Is(err, errConflict):
			continue
		case errors.Is(err, ErrUnavailable) && l.cfg.FailOpen:
			l.admittedOpen.Add(1)
			l.log.Warn("limits table unreachable; admitting the call open", "team_id", team.ID)
			return t, nil
		default:
			l.rate.give(team)
			return nil, err
		}
	}
	l.rate.give(team)
	return nil, l.unavailable("admit", errors.New("the team's item kept changing under 16 attempts"))
}

// reserve makes one attempt at admitting t: the conditional update, and when
// its condition fails, a read to tell why and the fix (create the item, move
// it to a new day or month, release expired leases) or the refusal.
func (l *DynamoDB) reserve(ctx context.Context, team *tenants.Team, t *Ticket, now time.Time) error {
	q, budget := team.Quotas, team.MonthlyBudgetUSD
	names := map[string]string{"#d": attrDay, "#m": attrMonth, "#r": attrReservations, "#id": t.id,
		"#rq": attrRequests, "#tc": attrTokensHeld, "#cc": attrCostHeld, "#ttl": TableTTL}
	values := map[string]types.AttributeValue{
		":day": s(t.Day), ":month": s(t.Month), ":one": n(1), ":tb": n(t.tokens), ":cb": nd(t.cost), ":ttl": n(expiresAt(now)),
		":res": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{
			resDay: s(t.Day), resMonth: s(t.Month), resTokens: n(t.tokens), resCost: nd(t.cost),
			resExpires: n(l.cfg.Now().Add(l.cfg.Lease).UnixMilli()), resState: s(stateHeld)}},
	}
	cond := []string{"#d = :day", "#m = :month", "attribute_not_exists(#r.#id)"}
	if q.DailyRequests > 0 {
		cond = append(cond, "#rq < :rqmax")
		values[":rqmax"] = n(q.DailyRequests)
	}
	if q.DailyTokens > 0 {
		cond = append(cond, "#tc <= :tcmax")
		values[":tcmax"] = n(q.DailyTokens - t.tokens)
	}
	if budget != nil {
		cond = append(cond, "#cc <= :ccmax")
		values[":ccmax"] = nd(budget.Sub(t.cost))
	}
	cctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	_, err := l.cfg.Client.UpdateItem(cctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(l.cfg.Table), Key: l.key(team.ID),
		ConditionExpression:       aws.String(strings.Join(cond, " AND ")),
		UpdateExpression:          aws.String("SET #r.#id = :res, #ttl = :ttl ADD #rq :one, #tc :tb, #cc :cb"),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: values,
	})
	if err == nil {
		return nil
	}
	if !isConditionFailed(err) {
		return l.unavailable("admit", err)
	}
	it, found, err := l.read(ctx, team.ID)
	if err != nil {
		return err
	}
	switch {
	case !found:
		return l.create(ctx, team.ID, t, now)
	case it.res[t.id].state == stateHeld:
		return nil // the update went through; its answer was lost and the SDK retried
	case it.day > t.Day || it.month > t.Month:
		// Another instance's clock is past midnight already: count there.
		t.Day, t.Month = max(t.Day, it.day), max(t.Month, it.month)
		return errConflict
	case it.day < t.Day || it.month < t.Month:
		return l.roll(ctx, team.ID, it, t.Day, t.Month)
	}
	if released, err := l.sweep(ctx, team.ID, it); err != nil || released {
		if err == nil {
			err = errConflict
		}
		return err
	}
	switch {
	case q.DailyRequests > 0 && it.requests >= q.DailyRequests:
		return requestRefusal(team.ID, q.DailyRequests, now)
	case q.DailyTokens > 0 && it.tokHeld+t.tokens > q.DailyTokens:
		return tokenRefusal(team.ID, q.DailyTokens, it.tokUsed, it.tokHeld-it.tokUsed, t.tokens, now)
	case budget != nil && it.costHeld.Add(t.cost).GreaterThan(*budget):
		return budgetRefusal(team.ID, *budget, it.spent, it.costHeld.Sub(it.spent), t.cost, now)
	}
	return errConflict
}

// read reads a team's item, strongly consistent.
func (l *DynamoDB) read(ctx context.Context, team string) (item, bool, error) {
	cctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	out, err := l.cfg.Client.GetItem(cctx, &dynamodb.GetItemInput{TableName: aws.String(l.cfg.Table), Key: l.key(team), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return item{}, false, l.unavailable("read", err)
	}
	if out.Item == nil {
		return item{}, false, nil
	}
	it := item{res: map[string]reservation{}}
	it.day, it.month = str(out.Item[attrDay]), str(out.Item[attrMonth])
	it.requests, it.tokHeld, it.tokUsed = num(out.Item[attrRequests]), num(out.Item[attrTokensHeld]), num(out.Item[attrTokensUsed])
	it.costHeld, it.spent = dec(out.Item[attrCostHeld]), dec(out.Item[attrCostUsed])
	if m, ok := out.Item[attrReservations].(*types.AttributeValueMemberM); ok {
		for id, v := range m.Value {
			rm, ok := v.(*types.AttributeValueMemberM)
			if !ok {
				continue
			}
			it.res[id] = reservation{day: str(rm.Value[resDay]), month: str(rm.Value[resMonth]), tokens: num(rm.Value[resTokens]),
				cost: dec(rm.Value[resCost]), expires: num(rm.Value[resExpires]), state: str(rm.Value[resState])}
		}
	}
	return it, true, nil
}

func str(v types.AttributeValue) string {
	if x, ok := v.(*types.AttributeValueMemberS); ok {
		return x.Value
	}
	return ""
}

func num(v types.AttributeValue) int64 {
	if x, ok := v.(*types.AttributeValueMemberN); ok {
		n, _ := strconv.ParseInt(x.Value, 10, 64)
		return n
	}
	return 0
}

func dec(v types.AttributeValue) decimal.Decimal {
	if x, ok := v.(*types.AttributeValueMemberN); ok {
		d, err := decimal.NewFromString(x.Value)
		if err == nil {
			return d
		}
	}
	return decimal.Zero
}

// create writes a team's first item, unless another instance just did.
func (l *DynamoDB) create(ctx context.Context, team string, t *Ticket, now time.Time) error {
	cctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	it := l.key(team)
	it[attrDay], it[attrMonth] = s(t.Day), s(t.Month)
	for _, a := range []string{attrRequests, attrTokensHeld, attrTokensUsed, attrCostHeld, attrCostUsed} {
		it[a] = n(0)
	}
	it[attrReservations] = &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{}}
	it[TableTTL] = n(expiresAt(now))
	_, err := l.cfg.Client.PutItem(cctx, &dynamodb.PutItemInput{TableName: aws.String(l.cfg.Table), Item: it,
		ConditionExpression: aws.String("attribute_not_exists(#pk)"), ExpressionAttributeNames: map[string]string{"#pk": TableKey}})
	if err != nil && !isConditionFailed(err) {
		return l.unavailable("create", err)
	}
	return errConflict
}

// roll moves a team's item to a new day (and month): the counters of the new
// period start at zero; reservations of calls still in flight stay, to be
// settled into the new period; released ones of old periods go.
func (l *DynamoDB) roll(ctx context.Context, team string, it item, day, month string) error {
	names := map[string]string{"#d": attrDay, "#m": attrMonth, "#rq": attrRequests, "#tc": attrTokensHeld, "#tu": attrTokensUsed}
	values := map[string]types.AttributeValue{":od": s(it.day), ":om": s(it.month), ":nd": s(max(day, it.day)), ":zero": n(0)}
	set := []string{"#d = :nd", "#rq = :zero", "#tc = :zero", "#tu = :zero"}
	if month > it.month {
		names["#cc"], names["#cu"] = attrCostHeld, attrCostUsed
		values[":nm"] = s(month)
		set = append(set, "#m = :nm", "#cc = :zero", "#cu = :zero")
	}
	expr := "SET " + strings.Join(set, ", ")
	var remove []string
	for _, id := range sortedIDs(it.res) {
		if r := it.res[id]; r.state == stateReleased && len(remove) < 50 {
			names["#o"+strconv.Itoa(len(remove))] = id
			remove = append(remove, "#r.#o"+strconv.Itoa(len(remove)))
		}
	}
	if len(remove) > 0 {
		names["#r"] = attrReservations
		expr += " REMOVE " + strings.Join(remove, ", ")
	}
	return l.update(ctx, "roll", team, "#d = :od AND #m = :om", expr, names, values)
}

// sweep releases the reservations of it whose lease has run out: their calls
// were never settled (the instance died, or lost the table for longer than
// the lease). The condition rechecks each lease against the clock, so a
// reservation is released once, and only after its lease. It reports whether
// it released any.
func (l *DynamoDB) sweep(ctx context.Context, team string, it item) (bool, error) {
	nowMS := l.cfg.Now().UnixMilli()
	names := map[string]string{"#d": attrDay, "#m": attrMonth, "#r": attrReservations, "#s": resState, "#e": resExpires,
		"#tc": attrTokensHeld, "#cc": attrCostHeld}
	values := map[string]types.AttributeValue{":d": s(it.day), ":m": s(it.month), ":h": s(stateHeld), ":x": s(stateReleased), ":now": n(nowMS)}
	cond := []string{"#d = :d", "#m = :m"}
	var set []string
	var tokens int64
	cost := decimal.Zero
	for _, id := range sortedIDs(it.res) {
		r := it.res[id]
		if r.state != stateHeld || r.expires >= nowMS || len(set) >= 50 {
			continue
		}
		k := "#x" + strconv.Itoa(len(set))
		names[k] = id
		cond = append(cond, fmt.Sprintf("#r.%s.#s = :h AND #r.%s.#e < :now", k, k))
		set = append(set, fmt.Sprintf("#r.%s.#s = :x", k))
		if r.day == it.day {
			tokens += r.tokens
		}
		if r.month == it.month {
			cost = cost.Add(r.cost)
		}
	}
	if len(set) == 0 {
		return false, nil
	}
	values[":tokens"], values[":cost"] = n(-tokens), nd(cost.Neg())
	err := l.update(ctx, "sweep", team, strings.Join(cond, " AND "), "SET "+strings.Join(set, ", ")+" ADD #tc :tokens, #cc :cost", names, values)
	if err != nil {
		return false, err
	}
	l.leasesExpired.Add(int64(len(set)))
	l.log.Warn("released reservations whose lease ran out", "team_id", team, "count", len(set), "tokens", tokens, "usd", cost.String())
	return true, nil
}

func sortedIDs(m map[string]reservation) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// update is one conditional UpdateItem; a failed condition is errConflict.
func (l *DynamoDB) update(ctx context.Context, op, team, cond, expr string, names map[string]string, values map[string]types.AttributeValue) error {
	cctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	_, err := l.cfg.Client.UpdateItem(cctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(l.cfg.Table), Key: l.key(team), ConditionExpression: aws.String(cond), UpdateExpression: aws.String(expr),
		ExpressionAttributeNames: names, ExpressionAttributeValues: values,
	})
	switch {
	case err == nil:
		return nil
	case isConditionFailed(err):
		return errConflict
	}
	return l.unavailable(op, err)
}

// renew extends t's lease every third of it until t is settled, so a call
// longer than the lease keeps its reservation while its instance lives.
func (l *DynamoDB) renew(t *Ticket) {
	defer l.wg.Done()
	tick := time.NewTicker(l.cfg.Lease / 3)
	defer tick.Stop()
	for {
		select {
		case <-t.done:
			return
		case <-l.closed:
			return
		case <-tick.C:
		}
		names := map[string]string{"#r": attrReservations, "#id": t.id, "#s": resState, "#e": resExpires}
		values := map[string]types.AttributeValue{":h": s(stateHeld), ":e": n(l.cfg.Now().Add(l.cfg.Lease).UnixMilli())}
		err := l.update(context.Background(), "renew", t.TeamID, "#r.#id.#s = :h", "SET #r.#id.#e = :e", names, values)
		if errors.Is(err, errConflict) {
			return // settled meanwhile, or released after all
		}
	}
}

// Settle implements Limits. A settlement the table cannot take now is retried
// in the background until it can, or the store is closed: settling is
// idempotent (it removes the reservation in the same update), so a retry
// never counts a call twice.
func (l *DynamoDB) Settle(ctx context.Context, t *Ticket, u Usage) error {
	if t == nil || !t.settle() {
		return nil
	}
	if t.id == "" {
		return nil // a team without quotas or budget
	}
	ctx = context.WithoutCancel(ctx)
	err := l.settle(ctx, t, u)
	if err == nil || !errors.Is(err, ErrUnavailable) {
		return err
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
			select {
			case <-l.closed:
				l.log.Error("limits: a settlement was never recorded", "team_id", t.TeamID, "tokens", u.Tokens, "usd", u.Cost.String())
				return
			case <-time.After(wait):
			}
			if err := l.settle(context.Background(), t, u); err == nil || !errors.Is(err, ErrUnavailable) {
				return
			}
		}
	}()
	return err
}

func (l *DynamoDB) settle(ctx context.Context, t *Ticket, u Usage) error {
	day, month := t.Day, t.Month
	if !u.At.IsZero() {
		at := u.At.UTC()
		day, month = max(day, at.Format(dayLayout)), max(month, at.Format(monthLayout))
	}
	if !t.stored {
		return l.addOpen(ctx, t, u, day, month)
	}
	// The common case: settled in the period it was admitted in, its lease not run out.
	if day == t.Day && month == t.Month {
		err := l.settleUpdate(ctx, t, u, t.Day, t.Month, stateHeld, true, true)
		if !errors.Is(err, errConflict) {
			return err
		}
	}
	for attempt := 0; attempt < 16; attempt++ {
		it, found, err := l.read(ctx, t.TeamID)
		if err != nil {
			return err
		}
		r, ok := it.res[t.id]
		if !found || !ok {
			return nil // settled already (a retry whose first answer was lost)
		}
		if it.day < day || it.month < month {
			if err := l.roll(ctx, t.TeamID, it, day, month); err != nil && !errors.Is(err, errConflict) {
				return err
			}
			continue
		}
		held := r.state == stateHeld
		err = l.settleUpdate(ctx, t, u, it.day, it.month, r.state, held && it.day == t.Day, held && it.month == t.Month)
		if !errors.Is(err, errConflict) {
			return err
		}
	}
	return l.unavailable("settle", errors.New("the team's item kept changing under 16 attempts"))
}

// settleUpdate counts u in the item's period (day, month), releases what the
// ticket holds there (releaseTokens, releaseCost) and removes the reservation,
// on condition that the item is in that period and the reservation in state.
func (l *DynamoDB) settleUpdate(ctx context.Context, t *Ticket, u Usage, day, month, state string, releaseTokens, releaseCost bool) error {
	dt, dc := u.Tokens, u.Cost
	if releaseTokens {
		dt -= t.tokens
	}
	if releaseCost {
		dc = dc.Sub(t.cost)
	}
	names := map[string]string{"#d": attrDay, "#m": attrMonth, "#r": attrReservations, "#id": t.id, "#s": resState,
		"#tc": attrTokensHeld, "#tu": attrTokensUsed, "#cc": attrCostHeld, "#cu": attrCostUsed}
	values := map[string]types.AttributeValue{":d": s(day), ":m": s(month), ":st": s(state),
		":dt": n(dt), ":ut": n(u.Tokens), ":dc": nd(dc), ":uc": nd(u.Cost)}
	return l.update(ctx, "settle", t.TeamID, "#d = :d AND #m = :m AND #r.#id.#s = :st",
		"ADD #tc :dt, #tu :ut, #cc :dc, #cu :uc REMOVE #r.#id", names, values)
}

// addOpen counts the usage of a call admitted open while the table was
// unreachable. It holds no reservation to make the update idempotent: a
// retry after a lost answer could count it twice, which fails closed.
func (l *DynamoDB) addOpen(ctx context.Context, t *Ticket, u Usage, day, month string) error {
	for attempt := 0; attempt < 16; attempt++ {
		it, found, err := l.read(ctx, t.TeamID)
		if err != nil {
			return err
		}
		if !found {
			if err := l.create(ctx, t.TeamID, &Ticket{Day: day, Month: month}, l.cfg.Now()); err != nil && !errors.Is(err, errConflict) {
				return err
			}
			continue
		}
		if it.day < day || it.month < month {
			if err := l.roll(ctx, t.TeamID, it, day, month); err != nil && !errors.Is(err, errConflict) {
				return err
			}
			continue
		}
		names := map[string]string{"#d": attrDay, "#m": attrMonth, "#rq": attrRequests, "#tc": attrTokensHeld, "#tu": attrTokensUsed, "#cc": attrCostHeld, "#cu": attrCostUsed}
		values := map[string]types.AttributeValue{":d": s(it.day), ":m": s(it.month), ":one": n(1), ":t": n(u.Tokens), ":c": nd(u.Cost)}
		err = l.update(ctx, "settle", t.TeamID, "#d = :d AND #m = :m", "ADD #rq :one, #tc :t, #tu :t, #cc :c, #cu :c", names, values)
		if !errors.Is(err, errConflict) {
			return err
		}
	}
	return l.unavailable("settle", errors.New("the team's item kept changing under 16 attempts"))
}

// Spent returns what team spent in month (YYYY-MM) as the table counts it.
func (l *DynamoDB) Spent(ctx context.Context, team, month string) (decimal.Decimal, error) {
	it, found, err := l.read(ctx, team)
	if err != nil || !found || it.month != month {
		return decimal.Zero, err
	}
	return it.spent, nil
}

// Counts are a team's counters as the table holds them now.
type Counts struct {
	Day, Month             string
	Requests               int64
	TokensUsed, TokensHeld int64 // held: used plus reserved by calls in flight
	Spent, CostHeld        decimal.Decimal
	Reservations, Released int // reservations held now, and released after their lease without being settled
}

// Counts reads team's counters (for tests and operators).
func (l *DynamoDB) Counts(ctx context.Context, team string) (Counts, error) {
	it, _, err := l.read(ctx, team)
	if err != nil {
		return Counts{}, err
	}
	c := Counts{Day: it.day, Month: it.month, Requests: it.requests, TokensUsed: it.tokUsed, TokensHeld: it.tokHeld, Spent: it.spent, CostHeld: it.costHeld}
	for _, r := range it.res {
		if r.state == stateHeld {
			c.Reservations++
		} else {
			c.Released++
		}
	}
	return c, nil
}

// TableDefinition is the limits table as CreateTable takes it: a partition
// key TableKey (S), on-demand capacity. Turn on TTL on TableTTL after creating
// it (UpdateTimeToLive); the limits never depend on TTL having run.
func TableDefinition(name string) *dynamodb.CreateTableInput {
	return &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(TableKey), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(TableKey), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	}
}

// TableActions are the only DynamoDB actions the invoker needs on the table:
// its least-privilege grant (infra/limits-table.json).
var TableActions = []string{"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}

// ErrNoTable is Check's answer when the table does not exist.
var ErrNoTable = errors.New("limits table does not exist")

// Check reads one item of the table, with only the grant the invoker has:
// ErrNoTable when the table does not exist, ErrUnavailable when it cannot be
// reached (the invoker then starts, and refuses limited calls until it can).
func (l *DynamoDB) Check(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	_, err := l.cfg.Client.GetItem(cctx, &dynamodb.GetItemInput{TableName: aws.String(l.cfg.Table), Key: l.key("-")})
	var nf *types.ResourceNotFoundException
	switch {
	case err == nil:
		return nil
	case errors.As(err, &nf):
		return fmt.Errorf("%w: %s (create it as infra/limits-table.json describes)", ErrNoTable, l.cfg.Table)
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}
