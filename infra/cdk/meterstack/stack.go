package meterstack

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsapigateway"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsathena"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudtrail"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatchactions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsdynamodb"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awseventstargets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskinesis"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambdadestinations"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambdaeventsources"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssnssubscriptions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/meter-dev/meter/infra/alarms"
	"github.com/meter-dev/meter/internal/metrics"
	"github.com/meter-dev/meter/invoker/limits"
)

// Functions are the Lambda functions of the stack, each built from
// cmd/lambda/<name> (the asset folder AssetsDir/<name> holds its bootstrap).
var Functions = []string{"invoker", "collector", "compactor", "reconciler"}

// Key prefixes in the bucket.
const (
	StorePrefix   = "store"               // the meter store: s3://BUCKET/store
	SpillPrefix   = "spill"               // the invoker's spill
	ConfigPrefix  = "config"              // tenants.yaml and prices.csv, written by the tenant admins only
	TenantsKey    = "config/tenants.yaml" // the tenant registry
	PricesKey     = "config/prices.csv"   // the price file, when the config's custom_prices is set
	ResultsPrefix = "athena-results"      // the Athena workgroup's results
)

// CmdTag is the tag each function carries naming the main package it is built from.
const CmdTag = "meter:cmd"

// Stack is the built stack and the parts tests and outputs refer to.
type Stack struct {
	awscdk.Stack
	Bucket    awss3.Bucket
	Stream    awskinesis.Stream
	Functions map[string]awslambda.Function
	Limits    awsdynamodb.Table
}

type builder struct {
	cfg    Config
	stack  awscdk.Stack
	bucket awss3.Bucket
	stream awskinesis.Stream
	dlq    awssqs.Queue
	limits awsdynamodb.Table
	fns    map[string]awslambda.Function
}

// New builds the stack of a valid cfg into scope.
func New(scope constructs.Construct, cfg Config) (*Stack, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.AssetsDir == "" {
		return nil, fmt.Errorf("meter stack: no AssetsDir with the functions' bootstraps")
	}
	tables, err := GlueTables()
	if err != nil {
		return nil, err
	}
	b := &builder{cfg: cfg, fns: map[string]awslambda.Function{}}
	b.stack = awscdk.NewStack(scope, jsii.String(cfg.StackName), &awscdk.StackProps{
		Env:         &awscdk.Environment{Account: jsii.String(cfg.Account), Region: jsii.String(cfg.Region)},
		Description: jsii.String("meter: metered access to Amazon Bedrock, chargeback and reconciliation"),
	})
	b.storage()
	db := b.catalog(tables)
	b.failureQueue()
	b.limitsTable()
	b.invoker()
	b.collector()
	b.compactor(db, tables)
	b.reconciler()
	b.alarms()
	out := func(id, v, desc string) {
		awscdk.NewCfnOutput(b.stack, jsii.String(id), &awscdk.CfnOutputProps{Value: jsii.String(v), Description: jsii.String(desc)})
	}
	out("BucketName", *b.bucket.BucketName(), "the bucket of the store, the spill, the tenants file and Athena's results")
	out("StoreUri", b.s3URI(StorePrefix), "--store for the meter CLI")
	out("TenantsUri", b.s3URI(TenantsKey), "the tenants file (meter team add writes it)")
	out("StreamUri", "kinesis://"+*b.stream.StreamName(), "--stream for the meter CLI (replay)")
	out("LimitsUri", "dynamodb://"+*b.limits.TableName(), "the invoker's limits table (METER_LIMITS; --limits for meter serve)")
	out("InvokerFunction", *b.fns["invoker"].FunctionName(), "the invoker behind API Gateway")
	out("GlueDatabase", db, "the Athena database of the events, usage_windows and daily tables")
	out("FailureQueueUrl", *b.dlq.QueueUrl(), "records and events the functions gave up on")
	return &Stack{Stack: b.stack, Bucket: b.bucket, Stream: b.stream, Functions: b.fns, Limits: b.limits}, nil
}

func (b *builder) s3URI(key string) string { return "s3://" + *b.bucket.BucketName() + "/" + key }

// storage creates the KMS-encrypted on-demand stream and the bucket.
func (b *builder) storage() {
	key := awskms.NewKey(b.stack, jsii.String("StreamKey"), &awskms.KeyProps{
		EnableKeyRotation: jsii.Bool(true), Description: jsii.String("meter usage stream"),
	})
	b.stream = awskinesis.NewStream(b.stack, jsii.String("UsageStream"), &awskinesis.StreamProps{
		StreamMode: awskinesis.StreamMode_ON_DEMAND, Encryption: awskinesis.StreamEncryption_KMS, EncryptionKey: key,
		RetentionPeriod: awscdk.Duration_Hours(jsii.Number(float64(b.cfg.StreamRetentionHours))),
	})
	days := func(n int) awscdk.Duration { return awscdk.Duration_Days(jsii.Number(float64(n))) }
	b.bucket = awss3.NewBucket(b.stack, jsii.String("Store"), &awss3.BucketProps{
		Encryption: awss3.BucketEncryption_S3_MANAGED, BlockPublicAccess: awss3.BlockPublicAccess_BLOCK_ALL(),
		EnforceSSL: jsii.Bool(true), Versioned: jsii.Bool(true), ObjectOwnership: awss3.ObjectOwnership_BUCKET_OWNER_ENFORCED,
		RemovalPolicy: awscdk.RemovalPolicy_RETAIN,
		LifecycleRules: &[]*awss3.LifecycleRule{
			{Id: jsii.String("raw-events"), Prefix: jsii.String(StorePrefix + "/events/"), Expiration: days(b.cfg.RawEventsDays)},
			{Id: jsii.String("spill"), Prefix: jsii.String(SpillPrefix + "/"), Expiration: days(b.cfg.SpillDays)},
			{Id: jsii.String("collector-staging"), Prefix: jsii.String(StorePrefix + "/_staging/"), Expiration: days(7)},
			{Id: jsii.String("athena-results"), Prefix: jsii.String(ResultsPrefix + "/"), Expiration: days(30)},
			{Id: jsii.String("old-versions"), NoncurrentVersionExpiration: days(30), AbortIncompleteMultipartUploadAfter: days(7)},
		},
	})
	// The tenants file: only the tenant admins may write it; the invoker only reads it.
	admins := make([]*string, len(b.cfg.TenantAdmins))
	for i, a := range b.cfg.TenantAdmins {
		admins[i] = jsii.String(a)
	}
	b.bucket.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid: jsii.String("OnlyTenantAdminsWriteConfig"), Effect: awsiam.Effect_DENY,
		Principals: &[]awsiam.IPrincipal{awsiam.NewAnyPrincipal()},
		Actions:    jsii.Strings("s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectAcl"),
		Resources:  &[]*string{b.bucket.ArnForObjects(jsii.String(ConfigPrefix + "/*"))},
		Conditions: &map[string]any{"ArnNotLike": map[string]any{"aws:PrincipalArn": admins}},
	}))
}

// limitsTable creates the table where the invokers count quotas and budgets,
// shaped as invoker/limits defines it (limits.TableDefinition: partition key
// limits.TableKey of type S, on demand; TTL on limits.TableTTL).
func (b *builder) limitsTable() {
	b.limits = awsdynamodb.NewTable(b.stack, jsii.String("Limits"), &awsdynamodb.TableProps{
		PartitionKey: &awsdynamodb.Attribute{Name: jsii.String(limits.TableKey), Type: awsdynamodb.AttributeType_STRING},
		BillingMode:  awsdynamodb.BillingMode_PAY_PER_REQUEST, TimeToLiveAttribute: jsii.String(limits.TableTTL),
		Encryption:                       awsdynamodb.TableEncryption_AWS_MANAGED,
		PointInTimeRecoverySpecification: &awsdynamodb.PointInTimeRecoverySpecification{PointInTimeRecoveryEnabled: jsii.Bool(true)},
		RemovalPolicy:                    awscdk.RemovalPolicy_RETAIN,
	})
}

// failureQueue is where the collector's event source and the scheduled
// functions put what they gave up on.
func (b *builder) failureQueue() {
	b.dlq = awssqs.NewQueue(b.stack, jsii.String("FailureQueue"), &awssqs.QueueProps{
		Encryption: awssqs.QueueEncryption_SQS_MANAGED, EnforceSSL: jsii.Bool(true),
		RetentionPeriod: awscdk.Duration_Days(jsii.Number(14)),
	})
}

var retention = map[int]awslogs.RetentionDays{1: awslogs.RetentionDays_ONE_DAY, 3: awslogs.RetentionDays_THREE_DAYS, 5: awslogs.RetentionDays_FIVE_DAYS,
	7: awslogs.RetentionDays_ONE_WEEK, 14: awslogs.RetentionDays_TWO_WEEKS, 30: awslogs.RetentionDays_ONE_MONTH, 60: awslogs.RetentionDays_TWO_MONTHS,
	90: awslogs.RetentionDays_THREE_MONTHS, 120: awslogs.RetentionDays_FOUR_MONTHS, 150: awslogs.RetentionDays_FIVE_MONTHS,
	180: awslogs.RetentionDays_SIX_MONTHS, 365: awslogs.RetentionDays_ONE_YEAR, 400: awslogs.RetentionDays_THIRTEEN_MONTHS,
	545: awslogs.RetentionDays_EIGHTEEN_MONTHS, 731: awslogs.RetentionDays_TWO_YEARS, 1096: awslogs.RetentionDays_THREE_YEARS,
	1827: awslogs.RetentionDays_FIVE_YEARS, 2192: awslogs.RetentionDays_SIX_YEARS, 2557: awslogs.RetentionDays_SEVEN_YEARS,
	2922: awslogs.RetentionDays_EIGHT_YEARS, 3288: awslogs.RetentionDays_NINE_YEARS, 3653: awslogs.RetentionDays_TEN_YEARS}

type fnSpec struct {
	id, cmd     string
	memoryMB    float64
	timeoutSecs float64
	env         map[string]string
	description string
}

// function creates one Lambda function from its pre-built bootstrap folder:
// provided.al2023 on arm64, its own log group, no permissions yet.
func (b *builder) function(s fnSpec) awslambda.Function {
	logs := awslogs.NewLogGroup(b.stack, jsii.String(s.id+"Logs"), &awslogs.LogGroupProps{
		Retention: retention[b.cfg.LogDays], RemovalPolicy: awscdk.RemovalPolicy_DESTROY,
	})
	env := map[string]*string{}
	for k, v := range s.env {
		env[k] = jsii.String(v)
	}
	fn := awslambda.NewFunction(b.stack, jsii.String(s.id), &awslambda.FunctionProps{
		Runtime: awslambda.Runtime_PROVIDED_AL2023(), Architecture: awslambda.Architecture_ARM_64(), Handler: jsii.String("bootstrap"),
		Code:       awslambda.Code_FromAsset(jsii.String(filepath.Join(b.cfg.AssetsDir, s.cmd)), nil),
		MemorySize: jsii.Number(s.memoryMB), Timeout: awscdk.Duration_Seconds(jsii.Number(s.timeoutSecs)),
		Environment: &env, LogGroup: logs, Description: jsii.String(s.description),
	})
	awscdk.Tags_Of(fn).Add(jsii.String(CmdTag), jsii.String("cmd/lambda/"+s.cmd), nil)
	b.fns[s.id] = fn
	return fn
}

// allow adds one statement to a function's role.
func allow(fn awslambda.Function, actions []string, resources []string, conditions map[string]any) {
	st := &awsiam.PolicyStatementProps{Actions: jsii.Strings(actions...), Resources: jsii.Strings(resources...)}
	if conditions != nil {
		st.Conditions = &conditions
	}
	fn.AddToRolePolicy(awsiam.NewPolicyStatement(st))
}

func (b *builder) objects(prefixes ...string) []string {
	out := make([]string, len(prefixes))
	for i, p := range prefixes {
		out[i] = *b.bucket.ArnForObjects(jsii.String(p + "*"))
	}
	return out
}

// list lets fn list the bucket under the given prefixes only.
func (b *builder) list(fn awslambda.Function, prefixes ...string) {
	pats := make([]any, len(prefixes))
	for i, p := range prefixes {
		pats[i] = p + "*"
	}
	allow(fn, []string{"s3:ListBucket"}, []string{*b.bucket.BucketArn()}, map[string]any{"StringLike": map[string]any{"s3:prefix": pats}})
}

func (b *builder) invoker() {
	env := map[string]string{
		"METER_TENANTS": b.s3URI(TenantsKey), "METER_STREAM": "kinesis://" + *b.stream.StreamName(),
		"METER_SPILL": b.s3URI(SpillPrefix), "METER_STORE": b.s3URI(StorePrefix),
		"METER_LIMITS": "dynamodb://" + *b.limits.TableName(),
	}
	if b.cfg.CustomPrices {
		env["METER_PRICES"] = b.s3URI(PricesKey)
	}
	spec := fnSpec{id: "invoker", cmd: "invoker", memoryMB: 512, timeoutSecs: 29, env: env,
		description: "meter invoke API behind API Gateway (buffered)"}
	fn := b.function(spec)
	streamEnv := map[string]string{"METER_RESPONSE_STREAM": "1"}
	for k, v := range env {
		streamEnv[k] = v
	}
	streaming := b.function(fnSpec{id: "invokerStream", cmd: "invoker", memoryMB: 512, timeoutSecs: 300, env: streamEnv,
		description: "meter invoke API behind a function URL in RESPONSE_STREAM mode (streaming routes)"})
	for _, f := range []awslambda.Function{fn, streaming} {
		var models []string
		for _, m := range b.cfg.Models {
			models = append(models, modelARNs(*b.stack.Partition(), b.cfg.Region, b.cfg.Account, m)...)
		}
		// Converse authorizes as bedrock:InvokeModel, ConverseStream as
		// bedrock:InvokeModelWithResponseStream.
		allow(f, []string{"bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"}, models, nil)
		allow(f, []string{"kinesis:PutRecords", "kinesis:PutRecord", "kinesis:DescribeStreamSummary", "kinesis:ListShards"}, []string{*b.stream.StreamArn()}, nil)
		b.stream.EncryptionKey().Grant(f, jsii.String("kms:GenerateDataKey"))
		allow(f, []string{"s3:GetObject"}, b.objects(ConfigPrefix+"/", StorePrefix+"/daily/"), nil)
		allow(f, []string{"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}, b.objects(SpillPrefix+"/"), nil)
		b.list(f, SpillPrefix+"/", StorePrefix+"/daily/")
		allow(f, limits.TableActions, []string{*b.limits.TableArn()}, nil)
	}
	api := awsapigateway.NewLambdaRestApi(b.stack, jsii.String("Api"), &awsapigateway.LambdaRestApiProps{
		Handler: fn, Proxy: jsii.Bool(true), CloudWatchRole: jsii.Bool(false),
		EndpointConfiguration: &awsapigateway.EndpointConfiguration{Types: &[]awsapigateway.EndpointType{awsapigateway.EndpointType_REGIONAL}},
		BinaryMediaTypes:      jsii.Strings("application/vnd.amazon.eventstream"),
		DeployOptions:         &awsapigateway.StageOptions{StageName: jsii.String("v1"), ThrottlingRateLimit: jsii.Number(1000), ThrottlingBurstLimit: jsii.Number(2000)},
	})
	url := streaming.AddFunctionUrl(&awslambda.FunctionUrlOptions{
		AuthType: awslambda.FunctionUrlAuthType_NONE, InvokeMode: awslambda.InvokeMode_RESPONSE_STREAM,
	})
	awscdk.NewCfnOutput(b.stack, jsii.String("InvokerStreamFunction"), &awscdk.CfnOutputProps{Value: streaming.FunctionName(),
		Description: jsii.String("the invoker behind the streaming function URL")})
	awscdk.NewCfnOutput(b.stack, jsii.String("ApiUrl"), &awscdk.CfnOutputProps{Value: api.Url(),
		Description: jsii.String("the invoke API (API Gateway REST, buffered answers); every route of the contract")})
	awscdk.NewCfnOutput(b.stack, jsii.String("StreamingUrl"), &awscdk.CfnOutputProps{Value: url.Url(),
		Description: jsii.String("the same API through a function URL in RESPONSE_STREAM mode: converse-stream and the /bedrock streaming routes stream here")})
}

func (b *builder) collector() {
	fn := b.function(fnSpec{id: "collector", cmd: "collector", memoryMB: 1024, timeoutSecs: 300,
		env:         map[string]string{"METER_STORE": b.s3URI(StorePrefix), "METER_WINDOW": fmt.Sprintf("%ds", b.cfg.WindowSeconds)},
		description: "meter collector: Kinesis tumbling windows to Parquet"})
	fn.AddEventSource(awslambdaeventsources.NewKinesisEventSource(b.stream, &awslambdaeventsources.KinesisEventSourceProps{
		StartingPosition: awslambda.StartingPosition_TRIM_HORIZON, BatchSize: jsii.Number(1000),
		TumblingWindow:          awscdk.Duration_Seconds(jsii.Number(float64(b.cfg.WindowSeconds))),
		ReportBatchItemFailures: jsii.Bool(true), BisectBatchOnError: jsii.Bool(true), RetryAttempts: jsii.Number(10),
		MaxRecordAge: awscdk.Duration_Hours(jsii.Number(24)), OnFailure: awslambdaeventsources.NewSqsDlq(b.dlq),
	}))
	allow(fn, []string{"s3:PutObject"}, b.objects(StorePrefix+"/events/", StorePrefix+"/usage_windows/", StorePrefix+"/quarantine/", StorePrefix+"/_staging/"), nil)
	allow(fn, []string{"s3:GetObject", "s3:DeleteObject"}, b.objects(StorePrefix+"/_staging/"), nil)
	b.list(fn, StorePrefix+"/_staging/")
}

// schedule invokes fn on a cron expression, with bounded retries and the
// failure queue as both the rule target's DLQ and the function's on-failure
// destination.
func (b *builder) schedule(id string, fn awslambda.Function, cron string) {
	fn.ConfigureAsyncInvoke(&awslambda.EventInvokeConfigOptions{
		OnFailure: awslambdadestinations.NewSqsDestination(b.dlq), RetryAttempts: jsii.Number(2),
		MaxEventAge: awscdk.Duration_Hours(jsii.Number(6)),
	})
	awsevents.NewRule(b.stack, jsii.String(id), &awsevents.RuleProps{
		Schedule: awsevents.Schedule_Expression(jsii.String(cron)),
		Targets: &[]awsevents.IRuleTarget{awseventstargets.NewLambdaFunction(fn, &awseventstargets.LambdaFunctionProps{
			DeadLetterQueue: b.dlq, RetryAttempts: jsii.Number(4), MaxEventAge: awscdk.Duration_Hours(jsii.Number(2)),
		})},
	})
}

func (b *builder) compactor(db string, tables []Table) {
	workgroup := awsathena.NewCfnWorkGroup(b.stack, jsii.String("WorkGroup"), &awsathena.CfnWorkGroupProps{
		Name: jsii.String(strings.ToLower(b.cfg.StackName)), State: jsii.String("ENABLED"), RecursiveDeleteOption: jsii.Bool(true),
		Description: jsii.String("meter: finance's queries and the compaction of large days"),
		WorkGroupConfiguration: &awsathena.CfnWorkGroup_WorkGroupConfigurationProperty{
			BytesScannedCutoffPerQuery: jsii.Number(float64(b.cfg.AthenaScanLimitBytes)), EnforceWorkGroupConfiguration: jsii.Bool(true),
			PublishCloudWatchMetricsEnabled: jsii.Bool(true),
			EngineVersion:                   &awsathena.CfnWorkGroup_EngineVersionProperty{SelectedEngineVersion: jsii.String("Athena engine version 3")},
			ResultConfiguration: &awsathena.CfnWorkGroup_ResultConfigurationProperty{
				OutputLocation:          jsii.String(b.s3URI(ResultsPrefix + "/")),
				EncryptionConfiguration: &awsathena.CfnWorkGroup_EncryptionConfigurationProperty{EncryptionOption: jsii.String("SSE_S3")},
			},
		},
	})
	wg := *workgroup.Name()
	awscdk.NewCfnOutput(b.stack, jsii.String("AthenaWorkGroup"), &awscdk.CfnOutputProps{Value: jsii.String(wg)})
	fn := b.function(fnSpec{id: "compactor", cmd: "compactor", memoryMB: 3008, timeoutSecs: 900,
		env: map[string]string{
			"METER_STORE": b.s3URI(StorePrefix), "METER_ATHENA_WORKGROUP": wg, "METER_ATHENA_DATABASE": db,
			"METER_ATHENA_OUTPUT": b.s3URI(ResultsPrefix + "/"), "METER_ATHENA_ABOVE_EVENTS": fmt.Sprint(b.cfg.AthenaAboveEvents),
		},
		description: "meter daily compaction: chargeback CSV, daily Parquet, manifest"})
	if b.cfg.CustomPrices {
		fn.AddEnvironment(jsii.String("METER_PRICES"), jsii.String(b.s3URI(PricesKey)), nil)
	}
	allow(fn, []string{"s3:GetObject"}, b.objects(StorePrefix+"/", PricesKey), nil)
	// The Athena engine writes the price file it compacts with to store/prices/.
	allow(fn, []string{"s3:PutObject"}, b.objects(StorePrefix+"/daily/", StorePrefix+"/chargeback/", StorePrefix+"/prices/"), nil)
	allow(fn, []string{"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"}, b.objects(ResultsPrefix+"/"), nil)
	allow(fn, []string{"s3:GetBucketLocation"}, []string{*b.bucket.BucketArn()}, nil)
	b.list(fn, StorePrefix+"/", ResultsPrefix+"/")
	p, r, a := *b.stack.Partition(), b.cfg.Region, b.cfg.Account
	allow(fn, []string{"athena:StartQueryExecution", "athena:GetQueryExecution", "athena:GetQueryResults", "athena:StopQueryExecution", "athena:GetWorkGroup"},
		[]string{fmt.Sprintf("arn:%s:athena:%s:%s:workgroup/%s", p, r, a, wg)}, nil)
	glue := []string{fmt.Sprintf("arn:%s:glue:%s:%s:catalog", p, r, a), fmt.Sprintf("arn:%s:glue:%s:%s:database/%s", p, r, a, db)}
	for _, t := range append(tables, Table{Name: "prices"}) {
		glue = append(glue, fmt.Sprintf("arn:%s:glue:%s:%s:table/%s/%s", p, r, a, db, t.Name))
	}
	allow(fn, []string{"glue:GetDatabase", "glue:GetTable", "glue:GetTables", "glue:GetPartition", "glue:GetPartitions"}, glue, nil)
	b.schedule("CompactSchedule", fn, b.cfg.CompactSchedule)
	awscdk.NewCfnOutput(b.stack, jsii.String("CompactorFunction"), &awscdk.CfnOutputProps{Value: fn.FunctionName(),
		Description: jsii.String(`the daily compaction; invoke with {"detail":{"day":"YYYY-MM-DD"}} to compact a day now`)})
}

func (b *builder) reconciler() {
	trail := b.cfg.CloudTrail
	fnEnv := map[string]string{"METER_STORE": b.s3URI(StorePrefix)}
	fn := b.function(fnSpec{id: "reconciler", cmd: "reconciler", memoryMB: 1024, timeoutSecs: 900, env: fnEnv,
		description: "meter daily reconciliation of usage against CloudTrail"})
	allow(fn, []string{"s3:GetObject"}, b.objects(StorePrefix+"/events/"), nil)
	allow(fn, []string{"s3:PutObject"}, b.objects(StorePrefix+"/reconciliation/"), nil)
	b.list(fn, StorePrefix+"/events/")
	switch {
	case trail == "create":
		logs := awss3.NewBucket(b.stack, jsii.String("TrailLogs"), &awss3.BucketProps{
			Encryption: awss3.BucketEncryption_S3_MANAGED, BlockPublicAccess: awss3.BlockPublicAccess_BLOCK_ALL(),
			EnforceSSL: jsii.Bool(true), ObjectOwnership: awss3.ObjectOwnership_BUCKET_OWNER_ENFORCED, RemovalPolicy: awscdk.RemovalPolicy_RETAIN,
			LifecycleRules: &[]*awss3.LifecycleRule{{Id: jsii.String("trail"), Expiration: awscdk.Duration_Days(jsii.Number(float64(b.cfg.RawEventsDays)))}},
		})
		// Bedrock Runtime calls (InvokeModel, Converse and their streams) are
		// CloudTrail management events: a trail of management events records them.
		awscloudtrail.NewTrail(b.stack, jsii.String("BedrockTrail"), &awscloudtrail.TrailProps{
			Bucket: logs, ManagementEvents: awscloudtrail.ReadWriteType_ALL, EnableFileValidation: jsii.Bool(true),
			IsMultiRegionTrail: jsii.Bool(true), IncludeGlobalServiceEvents: jsii.Bool(true),
		})
		fn.AddEnvironment(jsii.String("METER_CLOUDTRAIL"), jsii.String("s3://"+*logs.BucketName()+"/AWSLogs/"+b.cfg.Account+"/CloudTrail/"), nil)
		allow(fn, []string{"s3:GetObject"}, []string{*logs.ArnForObjects(jsii.String("AWSLogs/" + b.cfg.Account + "/CloudTrail/*"))}, nil)
		allow(fn, []string{"s3:ListBucket"}, []string{*logs.BucketArn()},
			map[string]any{"StringLike": map[string]any{"s3:prefix": []any{"AWSLogs/" + b.cfg.Account + "/CloudTrail/*"}}})
	case trail == "lookup":
		fn.AddEnvironment(jsii.String("METER_CLOUDTRAIL"), jsii.String("lookup"), nil)
		// LookupEvents has no resource-level permissions: AWS offers nothing narrower than *.
		allow(fn, []string{"cloudtrail:LookupEvents"}, []string{"*"}, nil)
	default:
		bucket, prefix, _ := strings.Cut(strings.TrimPrefix(trail, "s3://"), "/")
		fn.AddEnvironment(jsii.String("METER_CLOUDTRAIL"), jsii.String(trail), nil)
		allow(fn, []string{"s3:GetObject"}, []string{fmt.Sprintf("arn:%s:s3:::%s/%s*", *b.stack.Partition(), bucket, prefix)}, nil)
		allow(fn, []string{"s3:ListBucket"}, []string{fmt.Sprintf("arn:%s:s3:::%s", *b.stack.Partition(), bucket)},
			map[string]any{"StringLike": map[string]any{"s3:prefix": []any{prefix + "*"}}})
	}
	b.schedule("ReconcileSchedule", fn, b.cfg.ReconcileSchedule)
	awscdk.NewCfnOutput(b.stack, jsii.String("ReconcilerFunction"), &awscdk.CfnOutputProps{Value: fn.FunctionName(),
		Description: jsii.String(`the daily reconciliation; invoke with {"detail":{"day":"YYYY-MM-DD"}} to reconcile a day now`)})
}

var comparisons = map[string]awscloudwatch.ComparisonOperator{
	"GreaterThanThreshold":          awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
	"GreaterThanOrEqualToThreshold": awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
	"LessThanThreshold":             awscloudwatch.ComparisonOperator_LESS_THAN_THRESHOLD,
	"LessThanOrEqualToThreshold":    awscloudwatch.ComparisonOperator_LESS_THAN_OR_EQUAL_TO_THRESHOLD,
}

// alarms creates the CloudWatch alarms of infra/alarms/alarms.json on the
// functions' EMF metrics, and one on the failure queue, all to one SNS topic.
func (b *builder) alarms() {
	topic := awssns.NewTopic(b.stack, jsii.String("Alarms"), &awssns.TopicProps{EnforceSSL: jsii.Bool(true)})
	if b.cfg.AlarmEmail != "" {
		topic.AddSubscription(awssnssubscriptions.NewEmailSubscription(jsii.String(b.cfg.AlarmEmail), nil))
	}
	action := awscloudwatchactions.NewSnsAction(topic)
	all, err := alarms.All()
	if err != nil {
		panic(fmt.Sprintf("infra/alarms/alarms.json: %v", err)) // embedded and tested: cannot happen in a built binary
	}
	for _, a := range all {
		if a.Source != "emf" {
			continue
		}
		dims := map[string]*string{}
		for k, v := range a.Dimensions {
			dims[k] = jsii.String(v)
		}
		threshold := a.Threshold
		if a.Metric == metrics.ReconcileUnmetered {
			threshold = float64(b.cfg.UnmeteredThreshold)
		}
		al := awscloudwatch.NewAlarm(b.stack, jsii.String("Alarm-"+a.Name), &awscloudwatch.AlarmProps{
			AlarmName: jsii.String(a.Name), AlarmDescription: jsii.String(a.Summary + " (OPERATIONS.md: " + a.Name + ")"),
			Metric: awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
				Namespace: jsii.String(metrics.Namespace), MetricName: jsii.String(a.Metric), DimensionsMap: &dims,
				Statistic: jsii.String(a.Statistic), Period: awscdk.Duration_Seconds(jsii.Number(float64(a.Period))),
			}),
			Threshold: jsii.Number(threshold), EvaluationPeriods: jsii.Number(float64(a.Periods)),
			ComparisonOperator: comparisons[a.Comparison], TreatMissingData: awscloudwatch.TreatMissingData_NOT_BREACHING,
		})
		al.AddAlarmAction(action)
	}
	dlq := awscloudwatch.NewAlarm(b.stack, jsii.String("Alarm-failure-queue"), &awscloudwatch.AlarmProps{
		AlarmName:        jsii.String("meter-failures-queued"),
		AlarmDescription: jsii.String("a stream batch or a scheduled compaction or reconciliation was given up on and sits in the failure queue"),
		Metric:           b.dlq.MetricApproximateNumberOfMessagesVisible(&awscloudwatch.MetricOptions{Period: awscdk.Duration_Minutes(jsii.Number(5)), Statistic: jsii.String("Maximum")}),
		Threshold:        jsii.Number(0), EvaluationPeriods: jsii.Number(1),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD, TreatMissingData: awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	dlq.AddAlarmAction(action)
}
