package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/meter-dev/meter/internal/gcpolicy"
	"github.com/meter-dev/meter/internal/tlsfiles"
	"github.com/meter-dev/meter/invoker"
	"github.com/meter-dev/meter/invoker/emitter"
	"github.com/meter-dev/meter/invoker/tenants"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	tenantsPath := fs.String("tenants", "", "tenant registry YAML (see meter team add)")
	streamURI := fs.String("stream", "", "usage stream: file://DIR or kinesis://NAME")
	listen := fs.String("listen", "127.0.0.1:8080", "address to listen on")
	limits := fs.String("limits", "memory", "where quotas and budgets are counted: memory (this process) or dynamodb://TABLE[?lease=15m&unavailable=closed|open] (every instance sharing the table)")
	prices := fs.String("prices", "", "price CSV for monthly budgets (default: the shipped Bedrock price file)")
	spill := fs.String("spill-dir", "", "durable spill for usage events the stream cannot take (default: meter-spill beside the tenants file)")
	storeURI := fs.String("store", "", "store whose compacted daily Parquet answers GET /usage, and whose chargeback answers GET /report (admin keys): file://DIR or s3://BUCKET/PREFIX (default: both answer 501)")
	quiet := fs.Bool("quiet", false, quietUsage)
	certFile := fs.String("tls-cert", "", "serve HTTPS with this PEM certificate (chain); reloaded when it changes")
	keyFile := fs.String("tls-key", "", "the PEM private key of --tls-cert")
	if err := parse(fs, args, stdout); err != nil {
		return err
	}
	if err := need("tenants", *tenantsPath, "stream", *streamURI); err != nil {
		return err
	}
	gcpolicy.Apply() // GOGC and GOMEMLIMIT, when set, win
	var tc *tls.Config
	switch {
	case (*certFile == "") != (*keyFile == ""):
		return usagef("--tls-cert and --tls-key go together")
	case *certFile != "":
		var err error
		if tc, err = tlsfiles.Config(*certFile, *keyFile, logger(stderr, *quiet)); err != nil {
			return usagef("%v", errShort(err))
		}
	}
	lim, closeLimits, err := openLimits(ctx, *limits, logger(stderr, *quiet))
	if err != nil {
		return err
	}
	defer closeLimits()
	// The server starts without a valid tenants file (a deployment may write
	// it after the server starts): /readyz says not ready, every key is
	// unknown, until the file is valid.
	reg := tenants.WatchRegistry(*tenantsPath)
	if !reg.Loaded() {
		fmt.Fprintf(stderr, "meter serve: no valid tenants file at %s yet (create one with meter team add); not ready until there is\n", *tenantsPath)
	}
	book, err := loadPrices(ctx, *prices)
	if err != nil {
		return err
	}
	producer, closeStream, err := openProducer(ctx, *streamURI)
	if err != nil {
		return err
	}
	defer closeStream()
	if *spill == "" {
		*spill = filepath.Join(filepath.Dir(*tenantsPath), "meter-spill")
	}
	log := logger(stderr, *quiet)
	em, err := emitter.New(emitter.Config{Producer: producer, SpillDir: *spill, Logger: log})
	if err != nil {
		return err
	}
	defer em.Close()
	br, err := invoker.NewBedrockClient(ctx, localDefaults()...)
	if err != nil {
		return err
	}
	cfg := invoker.Config{Tenants: reg, Bedrock: br, Usage: em, Prices: book, Limits: lim, Logger: log}
	if *storeURI != "" {
		st, err := openStore(ctx, *storeURI)
		if err != nil {
			return err
		}
		cfg.Store = st
		cfg.Report = reportFunc(st, *storeURI, *tenantsPath)
	}
	srv, err := invoker.New(cfg)
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", *listen, err)
	}
	scheme := "http"
	if tc != nil {
		scheme = "https"
	}
	fmt.Fprintf(stdout, "invoke API on %s://%s (usage to %s, spill in %s); AWS SDK endpoint %s://%s%s\n",
		scheme, ln.Addr(), *streamURI, *spill, scheme, ln.Addr(), invoker.RuntimePrefix)
	return serveTLSUntil(ctx, ln, srv, tc)
}

// localDefaults fills in what a local setup lacks: a region when none is
// configured, and placeholder credentials when Bedrock is a server on this
// machine (meter bedrock-local) and no credentials are configured.
func localDefaults() []func(*config.LoadOptions) error {
	var opts []func(*config.LoadOptions) error
	if os.Getenv("AWS_REGION") == "" && os.Getenv("AWS_DEFAULT_REGION") == "" && os.Getenv("AWS_PROFILE") == "" {
		opts = append(opts, config.WithRegion("us-east-1"))
	}
	ep := os.Getenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME")
	if u, err := url.Parse(ep); err == nil && ep != "" && os.Getenv("AWS_ACCESS_KEY_ID") == "" && os.Getenv("AWS_PROFILE") == "" {
		if host := u.Hostname(); host == "127.0.0.1" || host == "localhost" || host == "::1" {
			opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("AKIAMETERLOCAL000001", "local", "")))
		}
	}
	return opts
}

func runTeam(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("team needs a subcommand: add, rotate-key, revoke-key or list")
	}
	sub, args := args[0], args[1:]
	fs := newFlags("team "+sub, stderr)
	tenantsPath := fs.String("tenants", "", "tenant registry YAML")
	team := fs.String("team", "", "team id")
	switch sub {
	case "add":
		cc := fs.String("cost-center", "", "cost center the team's usage is billed to")
		models := fs.String("models", "", "comma-separated allowed models: exact ids or prefix patterns like anthropic.* (default: none)")
		actFor := fs.String("act-for", "", "comma-separated team ids this team's keys may act for")
		rps := fs.Float64("rps", 0, "rate limit in requests per second (0: unlimited)")
		burst := fs.Int("burst", 0, "rate limit burst (default: the rps rounded up)")
		dailyReq := fs.Int64("daily-requests", 0, "daily request quota (0: unlimited)")
		dailyTok := fs.Int64("daily-tokens", 0, "daily token quota (0: unlimited)")
		budget := fs.String("budget", "", "monthly budget in USD, e.g. 250.00 (default: unlimited)")
		if err := parse(fs, args, stdout); err != nil {
			return err
		}
		if err := need("tenants", *tenantsPath, "team", *team); err != nil {
			return err
		}
		spec := tenants.TeamSpec{ID: *team, CostCenter: *cc, AllowedModels: splitList(*models), ActFor: splitList(*actFor), MonthlyBudgetUSD: *budget}
		if *rps < 0 || *burst < 0 || *dailyReq < 0 || *dailyTok < 0 {
			return usagef("limits must not be negative")
		}
		if *rps > 0 {
			spec.RateLimit = &tenants.RateLimit{RPS: *rps, Burst: *burst}
		}
		if *dailyReq > 0 || *dailyTok > 0 {
			spec.Quotas = &tenants.Quotas{DailyRequests: *dailyReq, DailyTokens: *dailyTok}
		}
		key, err := tenants.AddTeam(*tenantsPath, spec)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "added team %s to %s; its API key is shown once, below:\n%s\n", *team, *tenantsPath, key)
		return nil
	case "rotate-key":
		revokeOld := fs.Bool("revoke-old", false, "end the team's other keys at once (the same as --grace 0)")
		grace := fs.Duration("grace", tenants.DefaultGrace, "how long the team's other keys keep working (0: they end at once)")
		if err := parse(fs, args, stdout); err != nil {
			return err
		}
		if err := need("tenants", *tenantsPath, "team", *team); err != nil {
			return err
		}
		if *grace < 0 {
			return usagef("--grace must not be negative")
		}
		if *revokeOld {
			*grace = 0
		}
		key, keyID, err := tenants.RotateKeyGrace(*tenantsPath, *team, *grace, time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "new key %s for team %s; the other keys %s; the key is shown once, below:\n%s\n", keyID, *team, graceWords(*grace), key)
		return nil
	case "revoke-key":
		keyID := fs.String("key-id", "", "id of the key to revoke (see meter team list)")
		if err := parse(fs, args, stdout); err != nil {
			return err
		}
		if err := need("tenants", *tenantsPath, "team", *team, "key-id", *keyID); err != nil {
			return err
		}
		if err := tenants.RevokeKey(*tenantsPath, *team, *keyID); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked key %s of team %s\n", *keyID, *team)
		return nil
	case "list":
		if err := parse(fs, args, stdout); err != nil {
			return err
		}
		if err := need("tenants", *tenantsPath); err != nil {
			return err
		}
		teams, err := tenants.ListTeams(*tenantsPath)
		if err != nil {
			return err
		}
		if *team != "" {
			teams = onlyTeam(teams, *team)
			if len(teams) == 0 {
				return fmt.Errorf("team %q not found in %s", *team, *tenantsPath)
			}
		}
		for _, t := range teams {
			rate := "unlimited"
			if t.RateLimit != nil {
				rate = strconv.FormatFloat(t.RateLimit.RPS, 'f', -1, 64) + " rps"
			}
			budget := t.MonthlyBudgetUSD
			if budget == "" {
				budget = "unlimited"
			}
			active := 0
			for _, k := range t.Keys {
				if k.State == tenants.KeyActive || k.State == tenants.KeyGrace {
					active++
				}
			}
			fmt.Fprintf(stdout, "%-16s cost center %-10s models %-40s rate %-10s budget %-10s keys %d active of %d\n",
				t.ID, t.CostCenter, strings.Join(t.AllowedModels, ","), rate, budget, active, len(t.Keys))
			printKeys(stdout, t.Keys)
		}
		return nil
	}
	return usagef("unknown team subcommand %q: want add, rotate-key, revoke-key or list", sub)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
