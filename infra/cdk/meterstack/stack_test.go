package meterstack

// The stack is synthesized once, in the test process (CDK's Go bindings run
// the jsii runtime on Node.js: no CDK CLI, no AWS account), from functions
// built for linux/arm64 the way `cdk deploy` builds them, and the
// CloudFormation template is checked as data.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"

	"github.com/meter-dev/meter/infra/alarms"
	"github.com/meter-dev/meter/internal/metrics"
	"github.com/meter-dev/meter/invoker/limits"
	"github.com/meter-dev/meter/schemas"
)

var (
	template  map[string]any // the synthesized template, shared by the tests
	synthErr  error
	repoRoot  = filepath.Join("..", "..", "..")
	assetsDir string
)

func exampleConfig(t testing.TB) Config {
	cfg, err := LoadConfig(filepath.Join("..", "meter.example.json"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "meter-assets-")
	if err != nil {
		panic(err)
	}
	assetsDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	jsii.Close()
	os.Exit(code)
}

// synth returns the template of the example config, built once.
func synth(t *testing.T) map[string]any {
	t.Helper()
	if template == nil && synthErr == nil {
		synthErr = func() error {
			if err := BuildAssets(repoRoot, assetsDir); err != nil {
				return err
			}
			cfg := exampleConfig(t)
			cfg.AssetsDir = assetsDir
			app := awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(filepath.Join(assetsDir, "cdk.out"))})
			st, err := New(app, cfg)
			if err != nil {
				return err
			}
			tpl := assertions.Template_FromStack(st.Stack, nil)
			b, err := json.Marshal(tpl.ToJSON())
			if err != nil {
				return err
			}
			return json.Unmarshal(b, &template)
		}()
	}
	if synthErr != nil {
		t.Fatal(synthErr)
	}
	return template
}

// resources returns the template's resources of one type, by logical id.
func resources(t *testing.T, typ string) map[string]map[string]any {
	out := map[string]map[string]any{}
	for id, r := range synth(t)["Resources"].(map[string]any) {
		r := r.(map[string]any)
		if r["Type"] == typ {
			props, _ := r["Properties"].(map[string]any)
			out[id] = props
		}
	}
	return out
}

func list(v any) []any {
	switch v := v.(type) {
	case nil:
		return nil
	case []any:
		return v
	}
	return []any{v}
}

// statements returns every policy statement of the template: IAM policies and
// resource policies (bucket, queue, topic), with where each comes from.
func statements(t *testing.T) map[string][]map[string]any {
	out := map[string][]map[string]any{}
	for _, typ := range []string{"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy"} {
		for id, p := range resources(t, typ) {
			doc := p["PolicyDocument"].(map[string]any)
			for _, s := range list(doc["Statement"]) {
				out[typ+" "+id] = append(out[typ+" "+id], s.(map[string]any))
			}
		}
	}
	for id, r := range resources(t, "AWS::IAM::Role") {
		for _, p := range list(r["Policies"]) {
			for _, s := range list(p.(map[string]any)["PolicyDocument"].(map[string]any)["Statement"]) {
				out["AWS::IAM::Role "+id] = append(out["AWS::IAM::Role "+id], s.(map[string]any))
			}
		}
		if len(list(r["ManagedPolicyArns"])) > 0 {
			// The functions' execution roles may carry AWSLambdaBasicExecutionRole (logs only).
			for _, a := range list(r["ManagedPolicyArns"]) {
				if !strings.Contains(fmt.Sprint(a), "AWSLambdaBasicExecutionRole") {
					t.Errorf("role %s has managed policy %v", id, a)
				}
			}
		}
	}
	return out
}

func actionsOf(s map[string]any) []string {
	var out []string
	for _, a := range list(s["Action"]) {
		out = append(out, a.(string))
	}
	return out
}

func TestNoWildcardResourceOnBedrockKinesisS3OrDynamoDB(t *testing.T) {
	n := 0
	for where, sts := range statements(t) {
		for _, s := range sts {
			if s["Effect"] == "Deny" {
				continue // a deny as wide as it likes narrows access (the TLS-only and tenants-file statements)
			}
			for _, a := range actionsOf(s) {
				svc := strings.ToLower(strings.SplitN(a, ":", 2)[0])
				if svc != "bedrock" && svc != "kinesis" && svc != "s3" && svc != "dynamodb" {
					continue
				}
				n++
				if strings.HasSuffix(a, ":*") || a == "*" {
					t.Errorf("%s: action %s is every action of the service", where, a)
				}
				for _, r := range list(s["Resource"]) {
					if r == "*" {
						t.Errorf("%s: %s on resource *", where, a)
					}
					if str, ok := r.(string); ok && (strings.HasSuffix(str, ":*") || str == "arn:aws:s3:::*") {
						t.Errorf("%s: %s on %s", where, a, str)
					}
				}
			}
		}
	}
	if n < 10 {
		t.Fatalf("only %d Bedrock, Kinesis, S3 and DynamoDB actions found: the walk over the policies is broken", n)
	}
}

// limitsTableID returns the logical id of the one DynamoDB table: the limits.
func limitsTableID(t *testing.T) string {
	tables := resources(t, "AWS::DynamoDB::Table")
	if len(tables) != 1 {
		t.Fatalf("%d DynamoDB tables, want the limits table", len(tables))
	}
	for id := range tables {
		return id
	}
	return ""
}

func TestLimitsTableIsTheOneInvokerLimitsDefines(t *testing.T) {
	id := limitsTableID(t)
	tbl := resources(t, "AWS::DynamoDB::Table")[id]
	def := limits.TableDefinition("")
	if len(def.KeySchema) != 1 || len(def.AttributeDefinitions) != 1 || *def.KeySchema[0].AttributeName != limits.TableKey {
		t.Fatalf("limits.TableDefinition changed shape: %+v", def)
	}
	wantKeys := fmt.Sprintf("[map[AttributeName:%s KeyType:%s]]", limits.TableKey, def.KeySchema[0].KeyType)
	wantAttrs := fmt.Sprintf("[map[AttributeName:%s AttributeType:%s]]", limits.TableKey, def.AttributeDefinitions[0].AttributeType)
	if got := fmt.Sprint(tbl["KeySchema"]); got != wantKeys {
		t.Errorf("key schema %s, want %s", got, wantKeys)
	}
	if got := fmt.Sprint(tbl["AttributeDefinitions"]); got != wantAttrs {
		t.Errorf("attribute definitions %s, want %s", got, wantAttrs)
	}
	if tbl["BillingMode"] != string(def.BillingMode) {
		t.Errorf("billing mode %v, want %s", tbl["BillingMode"], def.BillingMode)
	}
	if got, want := fmt.Sprint(tbl["TimeToLiveSpecification"]), fmt.Sprintf("map[AttributeName:%s Enabled:true]", limits.TableTTL); got != want {
		t.Errorf("TTL %s, want %s", got, want)
	}
	if sse, _ := tbl["SSESpecification"].(map[string]any); sse["SSEEnabled"] != true {
		t.Errorf("the limits table is not encrypted with KMS: %v", tbl["SSESpecification"])
	}
	if pitr, _ := tbl["PointInTimeRecoverySpecification"].(map[string]any); pitr["PointInTimeRecoveryEnabled"] != true {
		t.Errorf("point-in-time recovery %v", tbl["PointInTimeRecoverySpecification"])
	}
	r := synth(t)["Resources"].(map[string]any)[id].(map[string]any)
	if r["DeletionPolicy"] != "Retain" || r["UpdateReplacePolicy"] != "Retain" {
		t.Errorf("the limits table is not retained: deletion %v, replacement %v", r["DeletionPolicy"], r["UpdateReplacePolicy"])
	}
	// Both invokers count in it.
	n := 0
	for fnID, fn := range resources(t, "AWS::Lambda::Function") {
		env, _ := fn["Environment"].(map[string]any)["Variables"].(map[string]any)
		if !strings.HasPrefix(fnID, "invoker") {
			if env["METER_LIMITS"] != nil {
				t.Errorf("%s has METER_LIMITS", fnID)
			}
			continue
		}
		n++
		if got, want := resolveSub(env["METER_LIMITS"]), "dynamodb://${"+id+"}"; got != want {
			t.Errorf("%s: METER_LIMITS %s, want %s", fnID, got, want)
		}
	}
	if n != 2 {
		t.Errorf("%d invoker functions, want 2 (API Gateway and the streaming function URL)", n)
	}
}

func TestOnlyTheInvokersMayUseTheLimitsTable(t *testing.T) {
	id := limitsTableID(t)
	invokerRoles := map[string]bool{}
	for fnID, role := range functionRoles(t) {
		if strings.HasPrefix(fnID, "invoker") {
			invokerRoles[role] = true
		}
	}
	isDynamoDB := func(a string) bool { return strings.HasPrefix(strings.ToLower(a), "dynamodb:") }
	want := slices.Sorted(slices.Values(limits.TableActions))
	granted := map[string]bool{}
	for pid, p := range resources(t, "AWS::IAM::Policy") {
		for _, s := range list(p["PolicyDocument"].(map[string]any)["Statement"]) {
			s := s.(map[string]any)
			acts := actionsOf(s)
			if !slices.ContainsFunc(acts, isDynamoDB) {
				continue
			}
			for _, r := range list(p["Roles"]) {
				role := r.(map[string]any)["Ref"].(string)
				if !invokerRoles[role] {
					t.Errorf("policy %s gives %s DynamoDB actions %v", pid, role, acts)
					continue
				}
				granted[role] = true
			}
			if got := slices.Sorted(slices.Values(acts)); !reflect.DeepEqual(got, want) || s["Effect"] != "Allow" {
				t.Errorf("policy %s: %v %v, want exactly %v", pid, s["Effect"], got, want)
			}
			if got, want := fmt.Sprint(list(s["Resource"])), fmt.Sprintf("[map[Fn::GetAtt:[%s Arn]]]", id); got != want {
				t.Errorf("policy %s: DynamoDB actions on %s, want only the limits table %s", pid, got, want)
			}
		}
	}
	for where, sts := range statements(t) {
		if strings.HasPrefix(where, "AWS::IAM::Policy ") {
			continue // checked above
		}
		for _, s := range sts {
			if acts := actionsOf(s); slices.ContainsFunc(acts, isDynamoDB) {
				t.Errorf("%s: DynamoDB actions %v", where, acts)
			}
		}
	}
	if len(invokerRoles) != 2 || len(granted) != 2 {
		t.Errorf("%d of %d invoker roles may use the limits table, want 2 of 2", len(granted), len(invokerRoles))
	}
}

// functionRoles maps each function's cmd (and id) to its role's logical id.
func functionRoles(t *testing.T) map[string]string {
	out := map[string]string{}
	for id, fn := range resources(t, "AWS::Lambda::Function") {
		role := fn["Role"].(map[string]any)["Fn::GetAtt"].([]any)[0].(string)
		out[id] = role
	}
	return out
}

// roleStatements returns the statements of the IAM policies attached to a role.
func roleStatements(t *testing.T, role string) []map[string]any {
	var out []map[string]any
	for _, p := range resources(t, "AWS::IAM::Policy") {
		for _, r := range list(p["Roles"]) {
			if r.(map[string]any)["Ref"] == role {
				for _, s := range list(p["PolicyDocument"].(map[string]any)["Statement"]) {
					out = append(out, s.(map[string]any))
				}
			}
		}
	}
	return out
}

func functionID(t *testing.T, prefix string) string {
	for id, fn := range resources(t, "AWS::Lambda::Function") {
		if strings.HasPrefix(id, prefix) && strings.Contains(fmt.Sprint(fn["Tags"]), "cmd/lambda/") {
			return id
		}
	}
	t.Fatalf("no function %s", prefix)
	return ""
}

func TestInvokerMayCallOnlyAllowListedModelsAndPutToItsStream(t *testing.T) {
	cfg := exampleConfig(t)
	want := map[string]bool{
		"arn:${AWS::Partition}:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0":                 true,
		"arn:${AWS::Partition}:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0": true,
		"arn:${AWS::Partition}:bedrock:*::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0":                         true,
		"arn:${AWS::Partition}:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0":                             true,
	}
	if len(cfg.Models) != 3 {
		t.Fatalf("the example config changed: %v", cfg.Models)
	}
	roles := functionRoles(t)
	bedrockRoles := 0
	for fnID, role := range roles {
		for _, s := range roleStatements(t, role) {
			acts := actionsOf(s)
			if !slices.ContainsFunc(acts, func(a string) bool { return strings.HasPrefix(a, "bedrock:") }) {
				if slices.ContainsFunc(acts, func(a string) bool { return strings.HasPrefix(a, "kinesis:Put") }) && !strings.HasPrefix(fnID, "invoker") {
					t.Errorf("%s may put records to the stream: %v", fnID, acts)
				}
				continue
			}
			if !strings.HasPrefix(fnID, "invoker") {
				t.Errorf("%s may call Bedrock: %v", fnID, acts)
				continue
			}
			bedrockRoles++
			sort.Strings(acts)
			if !reflect.DeepEqual(acts, []string{"bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"}) {
				t.Errorf("%s Bedrock actions %v", fnID, acts)
			}
			got := map[string]bool{}
			for _, r := range list(s["Resource"]) {
				got[resolveSub(r)] = true
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s may invoke %v\nwant exactly %v", fnID, keys(got), keys(want))
			}
		}
	}
	if bedrockRoles != 2 {
		t.Errorf("%d invoker roles with a Bedrock statement, want 2 (API Gateway and the streaming function URL)", bedrockRoles)
	}
}

// resolveSub renders an Fn::Join of strings and pseudo parameters as one string.
func resolveSub(r any) string {
	switch r := r.(type) {
	case string:
		return r
	case map[string]any:
		if j, ok := r["Fn::Join"].([]any); ok {
			var b strings.Builder
			for i, p := range j[1].([]any) {
				if i > 0 {
					b.WriteString(j[0].(string))
				}
				b.WriteString(resolveSub(p))
			}
			return b.String()
		}
		if ref, ok := r["Ref"].(string); ok {
			return "${" + ref + "}"
		}
	}
	b, _ := json.Marshal(r)
	return string(b)
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestEveryAsynchronousInvocationHasAFailureDestination(t *testing.T) {
	esms := resources(t, "AWS::Lambda::EventSourceMapping")
	if len(esms) != 1 {
		t.Fatalf("%d event source mappings, want the collector's", len(esms))
	}
	for id, m := range esms {
		dest, _ := m["DestinationConfig"].(map[string]any)
		if dest == nil || dest["OnFailure"] == nil {
			t.Errorf("%s has no on-failure destination", id)
		}
		if m["BisectBatchOnFunctionError"] != true || !slices.Contains(list(m["FunctionResponseTypes"]), any("ReportBatchItemFailures")) {
			t.Errorf("%s: bisect %v, response types %v", id, m["BisectBatchOnFunctionError"], m["FunctionResponseTypes"])
		}
		if r, ok := m["MaximumRetryAttempts"].(float64); !ok || r < 0 || r > 100 {
			t.Errorf("%s: retries %v are not bounded", id, m["MaximumRetryAttempts"])
		}
		if w, ok := m["TumblingWindowInSeconds"].(float64); !ok || w != 300 {
			t.Errorf("%s: tumbling window %v", id, m["TumblingWindowInSeconds"])
		}
	}
	// Scheduled functions: the rule's target has a DLQ and a retry policy, and
	// the function's asynchronous invocations an on-failure destination.
	invokeConfigs := map[string]bool{}
	for id, c := range resources(t, "AWS::Lambda::EventInvokeConfig") {
		dest, _ := c["DestinationConfig"].(map[string]any)
		if dest == nil || dest["OnFailure"] == nil {
			t.Errorf("%s has no on-failure destination", id)
			continue
		}
		invokeConfigs[c["FunctionName"].(map[string]any)["Ref"].(string)] = true
	}
	scheduled := 0
	for id, rule := range resources(t, "AWS::Events::Rule") {
		for _, tg := range list(rule["Targets"]) {
			tg := tg.(map[string]any)
			fn := tg["Arn"].(map[string]any)["Fn::GetAtt"].([]any)[0].(string)
			scheduled++
			if tg["DeadLetterConfig"] == nil || tg["RetryPolicy"] == nil {
				t.Errorf("rule %s target %s: DLQ %v, retry policy %v", id, fn, tg["DeadLetterConfig"], tg["RetryPolicy"])
			}
			if !invokeConfigs[fn] {
				t.Errorf("%s is invoked asynchronously by %s with no on-failure destination", fn, id)
			}
		}
	}
	if scheduled != 2 {
		t.Errorf("%d scheduled targets, want the compactor and the reconciler", scheduled)
	}
}

func TestBucketsBlockPublicAccessDenyPlainHTTPAndAreEncrypted(t *testing.T) {
	buckets := resources(t, "AWS::S3::Bucket")
	if len(buckets) != 2 {
		t.Fatalf("%d buckets, want the store and the trail's", len(buckets))
	}
	tlsOnly := map[string]bool{}
	for _, p := range resources(t, "AWS::S3::BucketPolicy") {
		bucket := p["Bucket"].(map[string]any)["Ref"].(string)
		for _, s := range list(p["PolicyDocument"].(map[string]any)["Statement"]) {
			s := s.(map[string]any)
			cond, _ := s["Condition"].(map[string]any)
			if s["Effect"] == "Deny" && fmt.Sprint(cond["Bool"]) == "map[aws:SecureTransport:false]" && fmt.Sprint(s["Principal"]) == "map[AWS:*]" {
				tlsOnly[bucket] = true
			}
		}
	}
	for id, b := range buckets {
		pab, _ := b["PublicAccessBlockConfiguration"].(map[string]any)
		for _, k := range []string{"BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"} {
			if pab[k] != true {
				t.Errorf("bucket %s: %s = %v", id, k, pab[k])
			}
		}
		enc, _ := b["BucketEncryption"].(map[string]any)
		if len(list(enc["ServerSideEncryptionConfiguration"])) == 0 {
			t.Errorf("bucket %s is not encrypted", id)
		}
		if !tlsOnly[id] {
			t.Errorf("bucket %s does not deny requests without TLS", id)
		}
	}
	// The store's lifecycle expires raw events and spills.
	var rules []string
	for _, b := range buckets {
		for _, r := range list(b["LifecycleConfiguration"].(map[string]any)["Rules"]) {
			r := r.(map[string]any)
			if r["Prefix"] != nil && r["ExpirationInDays"] != nil {
				rules = append(rules, fmt.Sprintf("%v:%v", r["Prefix"], r["ExpirationInDays"]))
			}
		}
	}
	for _, want := range []string{"store/events/:400", "spill/:14"} {
		if !slices.Contains(rules, want) {
			t.Errorf("no lifecycle rule %s in %v", want, rules)
		}
	}
}

func TestOnlyTenantAdminsMayWriteTheTenantsFile(t *testing.T) {
	found := false
	for _, p := range resources(t, "AWS::S3::BucketPolicy") {
		for _, s := range list(p["PolicyDocument"].(map[string]any)["Statement"]) {
			s := s.(map[string]any)
			if s["Sid"] != "OnlyTenantAdminsWriteConfig" {
				continue
			}
			found = true
			cond := fmt.Sprint(s["Condition"])
			if s["Effect"] != "Deny" || !slices.Contains(actionsOf(s), "s3:PutObject") ||
				!strings.Contains(cond, "ArnNotLike") || !strings.Contains(cond, "arn:aws:iam::123456789012:role/PlatformAdmin") ||
				!strings.Contains(resolveSub(list(s["Resource"])[0]), "/config/*") {
				t.Errorf("tenants file statement %v", s)
			}
		}
	}
	if !found {
		t.Fatal("no statement keeps the tenants file to its admins")
	}
	// No function may write under config/.
	for fnID, role := range functionRoles(t) {
		for _, s := range roleStatements(t, role) {
			if slices.Contains(actionsOf(s), "s3:PutObject") {
				for _, r := range list(s["Resource"]) {
					if strings.Contains(resolveSub(r), "/config/") {
						t.Errorf("%s may write %s", fnID, resolveSub(r))
					}
				}
			}
		}
	}
}

func TestStreamIsOnDemandAndEncryptedWithKMS(t *testing.T) {
	streams := resources(t, "AWS::Kinesis::Stream")
	if len(streams) != 1 {
		t.Fatalf("%d streams", len(streams))
	}
	for id, s := range streams {
		enc, _ := s["StreamEncryption"].(map[string]any)
		if enc["EncryptionType"] != "KMS" || enc["KeyId"] == nil {
			t.Errorf("stream %s encryption %v", id, enc)
		}
		if fmt.Sprint(s["StreamModeDetails"]) != "map[StreamMode:ON_DEMAND]" {
			t.Errorf("stream %s mode %v", id, s["StreamModeDetails"])
		}
	}
}

// hiveType is the Athena type of a Parquet column, read from its struct tag.
func hiveType(tag string) string {
	attr := map[string]string{}
	for _, kv := range strings.Split(tag, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		attr[k] = v
	}
	switch {
	case attr["convertedtype"] == "DECIMAL":
		return fmt.Sprintf("decimal(%s,%s)", attr["precision"], attr["scale"])
	case attr["logicaltype"] == "TIMESTAMP":
		return "timestamp"
	case attr["type"] == "BYTE_ARRAY" && attr["convertedtype"] == "UTF8":
		return "string"
	case attr["type"] == "INT32":
		return "int"
	case attr["type"] == "INT64":
		return "bigint"
	}
	return "unknown " + tag
}

func parquetSchema(row any) []string {
	var out []string
	t := reflect.TypeOf(row)
	re := regexp.MustCompile(`name=([a-z_0-9]+)`)
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("parquet")
		out = append(out, re.FindStringSubmatch(tag)[1]+" "+hiveType(tag))
	}
	return out
}

func TestGlueColumnsEqualTheParquetSchema(t *testing.T) {
	want := map[string][]string{
		"events": parquetSchema(schemas.EventRow{}), "usage_windows": parquetSchema(schemas.WindowRow{}), "daily": parquetSchema(schemas.DailyRow{}),
	}
	got := map[string]bool{}
	for id, tbl := range resources(t, "AWS::Glue::Table") {
		in := tbl["TableInput"].(map[string]any)
		name := in["Name"].(string)
		got[name] = true
		if name == "prices" {
			continue // the price CSV (OpenCSVSerde), not Parquet
		}
		sd := in["StorageDescriptor"].(map[string]any)
		var cols []string
		for _, c := range list(sd["Columns"]) {
			c := c.(map[string]any)
			cols = append(cols, fmt.Sprintf("%s %s", c["Name"], c["Type"]))
		}
		if !reflect.DeepEqual(cols, want[name]) {
			t.Errorf("Glue table %s (%s) columns\n%v\nParquet schema\n%v", name, id, cols, want[name])
		}
		if fmt.Sprint(in["PartitionKeys"]) != "[map[Name:dt Type:string]]" {
			t.Errorf("%s partitions %v", name, in["PartitionKeys"])
		}
		params := in["Parameters"].(map[string]any)
		loc := resolveSub(params["storage.location.template"])
		if params["projection.enabled"] != "true" || params["projection.dt.type"] != "date" ||
			!strings.HasSuffix(loc, "/store/"+name+"/dt=${dt}/") || strings.Contains(loc, "BUCKET") {
			t.Errorf("%s projection %v (location %s)", name, params, loc)
		}
		if !strings.Contains(fmt.Sprint(sd["SerdeInfo"]), "ParquetHiveSerDe") {
			t.Errorf("%s serde %v", name, sd["SerdeInfo"])
		}
	}
	if len(got) != 4 || !got["prices"] {
		t.Errorf("Glue tables %v, want events, usage_windows, daily and prices", got)
	}
	wgs := resources(t, "AWS::Athena::WorkGroup")
	for _, wg := range wgs {
		c := wg["WorkGroupConfiguration"].(map[string]any)
		if c["BytesScannedCutoffPerQuery"] == nil || !strings.Contains(resolveSub(c["ResultConfiguration"].(map[string]any)["OutputLocation"]), "/athena-results/") {
			t.Errorf("workgroup %v", c)
		}
	}
	if len(wgs) != 1 {
		t.Errorf("%d Athena workgroups", len(wgs))
	}
}

func TestEveryFunctionIsBuiltFromItsMainInCmdLambda(t *testing.T) {
	fns := resources(t, "AWS::Lambda::Function")
	cmds := map[string]bool{}
	for id, fn := range fns {
		var cmd string
		for _, tag := range list(fn["Tags"]) {
			if tag.(map[string]any)["Key"] == CmdTag {
				cmd = tag.(map[string]any)["Value"].(string)
			}
		}
		if cmd == "" {
			// CDK's own helper functions (none expected) would land here.
			t.Errorf("function %s has no %s tag: %v", id, CmdTag, fn["Handler"])
			continue
		}
		cmds[cmd] = true
		main, err := os.ReadFile(filepath.Join(repoRoot, cmd, "main.go"))
		if err != nil || !strings.Contains(string(main), "\npackage main\n") {
			t.Errorf("%s: %s/main.go is not a main package: %v", id, cmd, err)
		}
		if fn["Runtime"] != "provided.al2023" || fmt.Sprint(fn["Architectures"]) != "[arm64]" || fn["Handler"] != "bootstrap" {
			t.Errorf("%s: runtime %v, architectures %v, handler %v", id, fn["Runtime"], fn["Architectures"], fn["Handler"])
		}
		if _, err := os.Stat(filepath.Join(assetsDir, filepath.Base(cmd), "bootstrap")); err != nil {
			t.Errorf("%s: no bootstrap built for %s", id, cmd)
		}
	}
	for _, name := range Functions {
		if !cmds["cmd/lambda/"+name] {
			t.Errorf("no function built from cmd/lambda/%s", name)
		}
	}
	// The compactor has what the Athena engine needs.
	env := fns[functionID(t, "compactor")]["Environment"].(map[string]any)["Variables"].(map[string]any)
	for _, k := range []string{"METER_STORE", "METER_ATHENA_WORKGROUP", "METER_ATHENA_DATABASE", "METER_ATHENA_OUTPUT", "METER_ATHENA_ABOVE_EVENTS"} {
		if env[k] == nil {
			t.Errorf("compactor environment has no %s: %v", k, env)
		}
	}
	if env["METER_ATHENA_ABOVE_EVENTS"] != "50000000" {
		t.Errorf("METER_ATHENA_ABOVE_EVENTS = %v", env["METER_ATHENA_ABOVE_EVENTS"])
	}
}

func TestAlarmsAreTheOnesOperationsDefines(t *testing.T) {
	all, err := alarms.All()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]map[string]any{}
	for _, a := range resources(t, "AWS::CloudWatch::Alarm") {
		byName[fmt.Sprint(a["AlarmName"])] = a
	}
	n := 0
	for _, a := range all {
		if a.Source != "emf" {
			continue
		}
		n++
		got := byName[a.Name]
		if got == nil {
			t.Errorf("no alarm %s", a.Name)
			continue
		}
		dims := map[string]string{}
		for _, d := range list(got["Dimensions"]) {
			d := d.(map[string]any)
			dims[d["Name"].(string)] = d["Value"].(string)
		}
		if got["MetricName"] != a.Metric || got["Namespace"] != metrics.Namespace || !reflect.DeepEqual(dims, a.Dimensions) ||
			got["Threshold"] != a.Threshold || len(list(got["AlarmActions"])) != 1 {
			t.Errorf("alarm %s: %v; want %+v", a.Name, got, a)
		}
		if !slices.Contains(metrics.Names, a.Metric) {
			t.Errorf("alarm %s watches %s, which internal/metrics does not define", a.Name, a.Metric)
		}
	}
	if n < 7 || byName["meter-failures-queued"] == nil {
		t.Errorf("%d EMF alarms; failure-queue alarm %v", n, byName["meter-failures-queued"] != nil)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	good := exampleConfig(t).WithDefaults()
	if err := good.Validate(); err != nil {
		t.Fatalf("the example config: %v", err)
	}
	cases := map[string]func(*Config){
		"account":         func(c *Config) { c.Account = "12345" },
		"region":          func(c *Config) { c.Region = "Mars" },
		"models":          func(c *Config) { c.Models = []string{"*"} },
		"tenant_admins":   func(c *Config) { c.TenantAdmins = []string{"alice"} },
		"window_seconds":  func(c *Config) { c.WindowSeconds = 7 },
		"alarm_email":     func(c *Config) { c.AlarmEmail = "not an address" },
		"cloudtrail":      func(c *Config) { c.CloudTrail = "ftp://x" },
		"log_days":        func(c *Config) { c.LogDays = 8 },
		"raw_events_days": func(c *Config) { c.RawEventsDays = -1 },
	}
	for field, mutate := range cases {
		c := good
		c.Models = slices.Clone(good.Models)
		mutate(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), field+":") {
			t.Errorf("%s: %v", field, err)
		}
	}
	if err := (Config{}).WithDefaults().Validate(); err == nil || strings.Count(err.Error(), "\n") < 3 {
		t.Errorf("an empty config should name account, region, models and tenant_admins: %v", err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "c.json"), []byte(`{"acount": "123456789012"}`), 0o644)
	if _, err := LoadConfig(filepath.Join(dir, "c.json")); err == nil || !strings.Contains(err.Error(), "acount") {
		t.Errorf("a misspelt field: %v", err)
	}
}
