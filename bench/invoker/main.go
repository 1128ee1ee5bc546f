// Command invoker benchmarks the invoke API end to end: requests per second
// and p50/p99 latency through the invoker against calling the local model
// server directly and against a trivial proxy, in the same run, at several
// client counts; CPU and allocations per call of each server process; the
// time each call waits for its usage event to be durable; and the memory of
// requests in flight.
//
// The invoker runs once per usage stream (-streams): the embedded file stream
// on tmpfs (fsync costs nothing, so the figure is the invoker's own work), the
// embedded file stream on disk (fsync per group commit), and kinesalite
// through the Kinesis producer (a network round trip per group commit).
//
// It runs four processes: this load generator, the model servers
// (bedrocklocal at 0 ms, 20 ms and 10 s latency), the HTTP servers (invokers
// and trivial proxy per latency) and kinesalite. With -pin (default) the load
// generator runs on CPU 0 and every server on CPU 1 (taskset).
//
//	go run ./bench/invoker            # from the repository root; see BENCHMARKS.md
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof" // the servers process's /debug/pprof, for -cpuprofile
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/internal/bedrocklocal"
	"github.com/meter-dev/meter/internal/gcpolicy"
	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/invoker"
	"github.com/meter-dev/meter/invoker/emitter"
	"github.com/meter-dev/meter/invoker/tenants"
	"github.com/meter-dev/meter/schemas"
)

const (
	model      = "anthropic.claude-3-haiku-20240307-v1:0"
	streamName = "usage-bench"
	prompt     = "Explain tides to a child"
)

func main() {
	role := flag.String("role", "loadgen", "loadgen, models or servers (internal)")
	dur := flag.Duration("duration", 4*time.Second, "measuring time per cell")
	clients := flag.String("clients", "1,16,64", "concurrent clients")
	inflight := flag.Int("inflight", 8000, "requests held in flight for the memory figure (file descriptors: the invoker needs two per request)")
	pin := flag.Bool("pin", true, "pin the load generator to CPU 0 and the servers to CPU 1 with taskset")
	dir := flag.String("dir", "", "working directory (default: a temporary one)")
	profDir := flag.String("cpuprofile", "", "directory to write a CPU profile of the server process for every invoker cell (go tool pprof)")
	streams := flag.String("streams", "tmpfs,disk,kinesalite", "usage streams to run the invoker with: tmpfs (embedded file stream in /dev/shm), disk (embedded file stream in -dir), kinesalite")
	flag.Parse()
	switch *role {
	case "models":
		runModels()
	case "servers":
		runServers(*dir, *streams)
	default:
		runLoadgen(*dur, *clients, *inflight, *pin, *dir, *streams, *profDir)
	}
}

// ---- model servers process

func runModels() {
	ports := map[string]string{}
	for name, lat := range map[string]time.Duration{"model0": 0, "model20": 20 * time.Millisecond, "modelslow": 10 * time.Second} {
		bl, err := bedrocklocal.New(bedrocklocal.Config{Latency: lat})
		if err != nil {
			log.Fatal(err)
		}
		ports[name] = serve(bl)
	}
	announce(ports)
}

// ---- invoker and trivial proxy process

func runServers(dir, streams string) {
	gcpolicy.Apply() // as meter serve and the invoker Lambda do
	models := readEnvJSON("BENCH_MODELS")
	reg, err := tenants.OpenRegistry(filepath.Join(dir, "tenants.yaml"))
	if err != nil {
		log.Fatal(err)
	}
	usage, err := os.Create(filepath.Join(dir, "proxy-usage.jsonl"))
	if err != nil {
		log.Fatal(err)
	}
	sinks := map[string]*timedSink{}
	slowStream := strings.Split(streams, ",")[0] // the stream of the in-flight memory figure
	for _, name := range strings.Split(streams, ",") {
		var prod stream.Producer
		switch name {
		case "kinesalite":
			kc := kinesis.New(kinesis.Options{Region: "us-east-1", BaseEndpoint: aws.String(os.Getenv("BENCH_KINESIS")),
				Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")})
			prod = stream.NewKinesisProducer(kc, streamName, stream.KinesisProducerOptions{})
		case "tmpfs", "disk":
			sdir := filepath.Join(dir, "stream-disk")
			if name == "tmpfs" {
				sdir = os.Getenv("BENCH_TMPFS")
			}
			fs, err := stream.OpenFile(sdir, stream.FileOptions{Shards: 2})
			if err != nil {
				log.Fatal(err)
			}
			prod = fs
		default:
			log.Fatalf("-streams: unknown stream %q (tmpfs, disk or kinesalite)", name)
		}
		em, err := emitter.New(emitter.Config{Producer: prod, SpillDir: filepath.Join(dir, "spill-"+name)})
		if err != nil {
			log.Fatal(err)
		}
		sinks[name] = &timedSink{em: em}
	}
	ports := map[string]string{}
	for _, lat := range []string{"0", "20", "slow"} {
		br := bedrockruntime.New(bedrockruntime.Options{Region: "us-east-1", BaseEndpoint: aws.String(models["model"+lat]),
			Credentials: credentials.NewStaticCredentialsProvider("AKIAIOSFODNN7EXAMPLE", "local", ""), RetryMaxAttempts: 1,
			HTTPClient: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 20000}}})
		for name, sink := range sinks {
			if lat == "slow" && name != slowStream {
				continue
			}
			srv, err := invoker.New(invoker.Config{Tenants: reg, Bedrock: br, Usage: sink, Prices: pricing.Default(), ReloadInterval: -1, CallTimeout: time.Minute})
			if err != nil {
				log.Fatal(err)
			}
			ports["invoker-"+name+lat] = serve(srv)
			if lat == "slow" {
				ports["invokerslow"] = ports["invoker-"+name+lat]
			}
		}
		ports["proxy"+lat] = serve(&trivialProxy{model: models["model"+lat], usage: usage,
			client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 20000}}})
	}
	http.HandleFunc("/mem", func(w http.ResponseWriter, r *http.Request) {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		json.NewEncoder(w).Encode(map[string]uint64{"heap_inuse": m.HeapInuse, "stack_inuse": m.StackInuse, "sys": m.Sys, "goroutines": uint64(runtime.NumGoroutine())})
	})
	// /stats: allocations so far and, per stream, the summed durable wait.
	http.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		st := map[string]uint64{"mallocs": m.Mallocs}
		for name, sink := range sinks {
			st["wait_ns_"+name], st["emits_"+name] = uint64(sink.waitNS.Load()), uint64(sink.emits.Load())
		}
		json.NewEncoder(w).Encode(st)
	})
	ports["debug"] = serve(http.DefaultServeMux)
	announce(ports)
	select {}
}

// timedSink times how long each call waits for its usage event to be
// durable: the durability cost, reported apart from the invoker's own.
type timedSink struct {
	em            *emitter.Emitter
	waitNS, emits atomic.Int64
}

func (t *timedSink) Emit(ctx context.Context, ev *schemas.Event) error {
	start := time.Now()
	err := t.em.Emit(ctx, ev)
	t.waitNS.Add(int64(time.Since(start)))
	t.emits.Add(1)
	return err
}

// Ready keeps the invoker's readiness check on the emitter.
func (t *timedSink) Ready() bool { return t.em.Ready() }

// trivialProxy is the floor the invoker is compared with: JSON in and out,
// a key hash, one usage event per call appended to a file.
type trivialProxy struct {
	model  string
	client *http.Client
	mu     sync.Mutex
	usage  *os.File
}

func (p *trivialProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sum := sha256.Sum256([]byte(r.Header.Get("x-api-key")))
	var in struct {
		Inputs     string         `json:"inputs"`
		Parameters map[string]any `json:"parameters"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	body, _ := json.Marshal(map[string]any{"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50,
		"messages": []any{map[string]any{"role": "user", "content": in.Inputs}}})
	start := time.Now()
	resp, err := p.client.Post(p.model+"/model/"+model+"/invoke", "application/json", bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), 502)
		return
	}
	var out struct {
		Content []struct{ Text string } `json:"content"`
	}
	json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	ev, _ := json.Marshal(map[string]any{"request_id": resp.Header.Get("X-Amzn-RequestId"), "key": hex.EncodeToString(sum[:8]),
		"input_tokens": resp.Header.Get("X-Amzn-Bedrock-Input-Token-Count"), "latency_ms": time.Since(start).Milliseconds()})
	p.mu.Lock()
	p.usage.Write(append(ev, '\n'))
	p.mu.Unlock()
	text := ""
	if len(out.Content) > 0 {
		text = out.Content[0].Text
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode([]map[string]string{{"generated_text": text}})
}

func serve(h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go (&http.Server{Handler: h}).Serve(ln)
	return "http://" + ln.Addr().String()
}

func announce(v map[string]string) {
	b, _ := json.Marshal(v)
	fmt.Printf("READY %s\n", b)
	select {}
}

func readEnvJSON(name string) map[string]string {
	m := map[string]string{}
	if err := json.Unmarshal([]byte(os.Getenv(name)), &m); err != nil {
		log.Fatalf("%s: %v", name, err)
	}
	return m
}

// ---- load generator

type proc struct {
	cmd   *exec.Cmd
	ports map[string]string
}

func start(pin bool, cpu string, env []string, name string, args ...string) *proc {
	if pin {
		args = append([]string{"-c", cpu, name}, args...)
		name = "taskset"
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		log.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "READY "); ok {
			p := &proc{cmd: cmd, ports: map[string]string{}}
			json.Unmarshal([]byte(rest), &p.ports)
			go io.Copy(io.Discard, out)
			return p
		}
		if rest, ok := strings.CutPrefix(line, "LISTENING "); ok {
			go io.Copy(io.Discard, out)
			return &proc{cmd: cmd, ports: map[string]string{"kinesis": "http://127.0.0.1:" + rest}}
		}
	}
	log.Fatalf("%s exited before it was ready", name)
	return nil
}

// cpuTime is a process's user+system CPU time so far.
func (p *proc) cpuTime() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / 100) // USER_HZ is 100 on Linux
}

func (p *proc) rss() int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n << 10
		}
	}
	return 0
}

const kinesaliteScript = `
const path = require('path');
const k = require(path.join(process.argv[2], 'kinesalite'))({createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 100});
const server = k.listen(0, '127.0.0.1', () => { console.log('LISTENING ' + server.address().port); });
`

func runLoadgen(dur time.Duration, clientList string, inflight int, pin bool, dir, streams, profDir string) {
	if pin {
		if _, err := exec.LookPath("taskset"); err != nil {
			log.Printf("taskset not found: running unpinned")
			pin = false
		}
	}
	if pin {
		// Pin this process (and its goroutines' threads) to CPU 0.
		if out, err := exec.Command("taskset", "-a", "-p", "-c", "0", strconv.Itoa(os.Getpid())).CombinedOutput(); err != nil {
			log.Printf("pinning the load generator: %v: %s", err, out)
		}
	}
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "meter-bench-"); err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(dir)
	}
	self, _ := os.Executable()
	modules := os.Getenv("METER_NODE_MODULES")
	if modules == "" {
		modules, _ = filepath.Abs(".tools/node/node_modules")
	}
	streamList := strings.Split(streams, ",")
	var kin *proc
	env := []string{}
	for _, name := range streamList {
		switch name {
		case "kinesalite":
			script := filepath.Join(dir, "kinesalite.js")
			os.WriteFile(script, []byte(kinesaliteScript), 0o644)
			kin = start(pin, "1", nil, "node", script, modules)
			defer kin.cmd.Process.Kill()
			kc := kinesis.New(kinesis.Options{Region: "us-east-1", BaseEndpoint: aws.String(kin.ports["kinesis"]),
				Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")})
			if _, err := kc.CreateStream(context.Background(), &kinesis.CreateStreamInput{StreamName: aws.String(streamName), ShardCount: aws.Int32(2)}); err != nil {
				log.Fatalf("creating the stream: %v", err)
			}
			time.Sleep(200 * time.Millisecond)
			env = append(env, "BENCH_KINESIS="+kin.ports["kinesis"])
		case "tmpfs":
			shm, err := os.MkdirTemp("/dev/shm", "meter-bench-stream-")
			if err != nil {
				log.Fatalf("tmpfs stream: %v", err)
			}
			defer os.RemoveAll(shm)
			env = append(env, "BENCH_TMPFS="+shm)
		case "disk":
		default:
			log.Fatalf("-streams: unknown stream %q (tmpfs, disk or kinesalite)", name)
		}
	}

	key, err := tenants.AddTeam(filepath.Join(dir, "tenants.yaml"), tenants.TeamSpec{ID: "bench", CostCenter: "CC-1", AllowedModels: []string{"anthropic.*"}})
	if err != nil {
		log.Fatal(err)
	}
	models := start(pin, "1", nil, self, "-role", "models")
	defer models.cmd.Process.Kill()
	mj, _ := json.Marshal(models.ports)
	servers := start(pin, "1", append(env, "BENCH_MODELS="+string(mj)), self, "-role", "servers", "-dir", dir, "-streams", streams)
	defer servers.cmd.Process.Kill()

	host, _ := os.Hostname()
	fmt.Printf("# meter invoker benchmark: %s, %d CPUs (%s/%s), pinned=%v, %s per cell, Go %s, load average %s\n\n", host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, pin, dur, runtime.Version(), loadAverage())
	fmt.Printf("Invoker rows name their usage stream: tmpfs (embedded file stream in /dev/shm: the invoker's own work), disk (embedded file stream, fsync per group commit), kinesalite (Kinesis API round trip per group commit). Durable wait: the mean time a call waits for its usage event to be durable, part of its added latency.\n\n")

	nativeBody, _ := json.Marshal(map[string]any{"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50,
		"messages": []any{map[string]any{"role": "user", "content": prompt}}})
	seedBody, _ := json.Marshal(map[string]any{"inputs": prompt, "parameters": map[string]any{"max_new_tokens": 50}})
	direct := func(base string) func() *http.Request {
		return func() *http.Request {
			r, _ := http.NewRequest("POST", base+"/model/"+model+"/invoke", bytes.NewReader(nativeBody))
			r.Header.Set("Content-Type", "application/json")
			return r
		}
	}
	seed := func(base string) func() *http.Request {
		return func() *http.Request {
			r, _ := http.NewRequest("POST", base+"/invoke_model?model_id="+model, bytes.NewReader(seedBody))
			r.Header.Set("x-api-key", key)
			r.Header.Set("Content-Type", "application/json")
			return r
		}
	}
	for _, lat := range []string{"0", "20"} {
		fmt.Printf("## model server latency %s ms\n\n", lat)
		fmt.Printf("| clients | target | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | throughput vs direct | server CPU us/call | allocs/call | durable wait ms/call | kinesalite CPU us/call | model CPU us/call |\n")
		fmt.Printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
		for _, cs := range strings.Split(clientList, ",") {
			c, _ := strconv.Atoi(cs)
			type target struct {
				name, stream string
				req          func() *http.Request
			}
			targets := []target{{"direct", "", direct(models.ports["model"+lat])}}
			for _, st := range streamList {
				targets = append(targets, target{"invoker " + st, st, seed(servers.ports["invoker-"+st+lat])})
			}
			targets = append(targets, target{"trivial proxy", "", seed(servers.ports["proxy"+lat])})
			var base result
			for _, tg := range targets {
				run(tg.req, c, dur/4, nil, nil, nil, "") // warm up connections and caches
				var k *proc
				if tg.stream == "kinesalite" {
					k = kin
				}
				var prof sync.WaitGroup
				if profDir != "" && tg.stream != "" {
					prof.Add(1)
					go func() {
						defer prof.Done()
						profile(servers, dur, filepath.Join(profDir, fmt.Sprintf("%sms-%dc-%s.prof", lat, c, tg.stream)))
					}()
				}
				res := run(tg.req, c, dur, servers, k, models, tg.stream)
				prof.Wait()
				if tg.name == "direct" {
					base = res
				}
				added := func(a, b time.Duration) string {
					if tg.name == "direct" {
						return "-"
					}
					return fmt.Sprintf("%.3f", ms(a-b))
				}
				srvCPU, allocs, wait, kinCPU := "-", "-", "-", "-"
				if tg.name != "direct" {
					srvCPU, allocs = fmt.Sprintf("%.0f", res.serverCPU), fmt.Sprintf("%.0f", res.allocs)
				}
				if tg.stream != "" {
					wait = fmt.Sprintf("%.3f", res.durableWait)
				}
				if k != nil {
					kinCPU = fmt.Sprintf("%.0f", res.kinesisCPU)
				}
				fmt.Printf("| %d | %s | %.0f | %.3f | %.3f | %s | %s | %.0f%% | %s | %s | %s | %s | %.0f |\n", c, tg.name, res.rps, ms(res.p50), ms(res.p99),
					added(res.p50, base.p50), added(res.p99, base.p99), 100*res.rps/base.rps, srvCPU, allocs, wait, kinCPU, res.modelCPU)
				if res.errors > 0 {
					fmt.Printf("|  | %s: %d failed calls, e.g. %s |\n", tg.name, res.errors, res.firstErr)
				}
			}
		}
		fmt.Println()
	}
	memoryInFlight(servers, seed(servers.ports["invokerslow"]), inflight)
}

type result struct {
	rps                             float64
	p50, p99                        time.Duration
	serverCPU, kinesisCPU, modelCPU float64 // microseconds per call
	allocs                          float64 // heap allocations per call in the server process
	durableWait                     float64 // milliseconds per call waiting for the usage event
	errors                          int64
	firstErr                        string
}

// serverStats reads the server process's allocation count and, for stream,
// its summed durable wait and number of events.
func serverStats(servers *proc, stream string) (mallocs, waitNS, emits uint64) {
	resp, err := http.Get(servers.ports["debug"] + "/stats")
	if err != nil {
		return 0, 0, 0
	}
	defer resp.Body.Close()
	m := map[string]uint64{}
	json.NewDecoder(resp.Body).Decode(&m)
	return m["mallocs"], m["wait_ns_"+stream], m["emits_"+stream]
}

// profile writes a CPU profile of the server process over most of a cell.
func profile(servers *proc, dur time.Duration, path string) {
	secs := max(1, int((dur-500*time.Millisecond)/time.Second))
	resp, err := http.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", servers.ports["debug"], secs))
	if err != nil {
		log.Printf("profile: %v", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		log.Printf("profile: %v", err)
		return
	}
	defer f.Close()
	io.Copy(f, resp.Body)
}

// loadAverage is /proc/loadavg's first three fields.
func loadAverage() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func run(newReq func() *http.Request, clients int, dur time.Duration, servers, kin, models *proc, stream string) result {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}}
	var (
		mu      sync.Mutex
		lats    []time.Duration
		errs    atomic.Int64
		errOnce sync.Once
		first   string
	)
	cpu := func(p *proc) time.Duration {
		if p == nil {
			return 0
		}
		return p.cpuTime()
	}
	var a0, w0, e0 uint64
	if servers != nil {
		a0, w0, e0 = serverStats(servers, stream)
	}
	s0, k0, m0 := cpu(servers), cpu(kin), cpu(models)
	deadline := time.Now().Add(dur)
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			for time.Now().Before(deadline) {
				t := time.Now()
				resp, err := client.Do(newReq())
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					errs.Add(1)
					errOnce.Do(func() { first = err.Error() })
					continue
				}
				local = append(local, time.Since(t))
			}
			mu.Lock()
			lats = append(lats, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	client.CloseIdleConnections()
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	r := result{errors: errs.Load(), firstErr: first}
	if n := len(lats); n > 0 {
		r.rps = float64(n) / elapsed.Seconds()
		r.p50, r.p99 = lats[n/2], lats[min(n-1, n*99/100)]
		per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(n) }
		r.serverCPU, r.kinesisCPU, r.modelCPU = per(cpu(servers)-s0), per(cpu(kin)-k0), per(cpu(models)-m0)
		if servers != nil {
			a1, w1, e1 := serverStats(servers, stream)
			r.allocs = float64(a1-a0) / float64(n)
			if e1 > e0 {
				r.durableWait = float64(w1-w0) / float64(e1-e0) / 1e6
			}
		}
	}
	return r
}

// memoryInFlight holds n calls open in the invoker (the model answers after
// 10 s) and reports what the invoker process holds for them.
func memoryInFlight(servers *proc, newReq func() *http.Request, n int) {
	mem := func() map[string]uint64 {
		resp, err := http.Get(servers.ports["debug"] + "/mem")
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		m := map[string]uint64{}
		json.NewDecoder(resp.Body).Decode(&m)
		return m
	}
	before, rss0 := mem(), servers.rss()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: n}, Timeout: time.Minute}
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Do(newReq())
			if err != nil {
				failed.Add(1)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				ok.Add(1)
			} else {
				failed.Add(1)
			}
		}()
	}
	// Wait until every call is inside the invoker (goroutines grew by n).
	var during map[string]uint64
	for deadline := time.Now().Add(9 * time.Second); time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		during = mem()
		if during["goroutines"] >= before["goroutines"]+uint64(n) {
			break
		}
	}
	rss1 := servers.rss()
	wg.Wait()
	per10k := func(b, a uint64) float64 { return float64(int64(a)-int64(b)) / float64(n) * 10000 / (1 << 20) }
	fmt.Printf("## memory of requests in flight (model answers after 10 s)\n\n")
	fmt.Printf("%d calls held in the invoker (%d answered 200, %d failed); goroutines %d -> %d.\n\n", n, ok.Load(), failed.Load(), before["goroutines"], during["goroutines"])
	fmt.Printf("| per 10k in flight | MiB |\n| --- | --- |\n")
	fmt.Printf("| Go heap in use | %.1f |\n| goroutine stacks | %.1f |\n| process RSS | %.1f |\n\n",
		per10k(before["heap_inuse"], during["heap_inuse"]), per10k(before["stack_inuse"], during["stack_inuse"]),
		float64(rss1-rss0)/float64(n)*10000/(1<<20))
}
