// Package bedrocklocal is a local model server that speaks the Amazon
// Bedrock Runtime REST protocol, and the CloudTrail LookupEvents API for the
// calls it served. The real aws-sdk-go-v2 clients talk to it unchanged:
//
//	AWS_ENDPOINT_URL_BEDROCK_RUNTIME=http://127.0.0.1:PORT
//	AWS_ENDPOINT_URL_CLOUDTRAIL=http://127.0.0.1:PORT   (same listener)
//
// It exists so the metering pipeline can be built, tested and demonstrated
// without AWS. Its answers are synthetic (words drawn by a hash of the model
// and the prompt); what is faithful is the protocol: routes, request and
// response bodies per model family, token-count headers, event-stream
// framing, error shapes and CloudTrail records. It keeps no prompt or answer
// beyond the call, and it never calls AWS.
//
// # API
//
//	func New(cfg Config) (*Server, error)
//	func (*Server) ServeHTTP(w http.ResponseWriter, r *http.Request)
//	func (*Server) CloudTrailHandler() http.Handler
//	func (*Server) Flush() error   // deliver buffered CloudTrail records now
//	func (*Server) Close() error   // stop periodic delivery, deliver the rest
//	func Models() []Model          // the base model ids answered
//
//	const HeaderInjectError  = "X-Meter-Inject-Error" // fail this call with the named exception
//	const HeaderLatency      = "X-Meter-Latency"      // this call's latency, e.g. "20ms"
//	const HeaderOmitTrail    = "X-Meter-Omit-Trail"   // "true": no CloudTrail record for this call
//	const PromptInjectMarker = "[[meter-inject:"      // in prompt text: "[[meter-inject:ThrottlingException]]"
//
// # Routes
//
//	POST /model/{modelId}/invoke                       InvokeModel
//	POST /model/{modelId}/invoke-with-response-stream  InvokeModelWithResponseStream
//	POST /model/{modelId}/converse                     Converse
//	POST /model/{modelId}/converse-stream              ConverseStream
//	POST /  with X-Amz-Target: CloudTrail_20131101.LookupEvents
//
// modelId is a base model id (anthropic.claude-3-haiku-20240307-v1:0), a
// cross-region inference profile (us., eu., apac., global., … prefix), a
// foundation-model or inference-profile ARN, or an application inference
// profile listed in Config.ApplicationProfiles. Unknown ids answer
// ResourceNotFoundException (404).
//
// # Model families
//
// Each family answers InvokeModel in its provider's own JSON shapes (the
// table in families.go; the shape is picked by the body's keys):
// Amazon Titan Text (inputText), Amazon Nova (messages), Anthropic Claude
// (Messages API and "\n\nHuman: … \n\nAssistant:" completions), AI21 (Jamba
// chat, Jurassic-2 completions), Cohere Command (prompt; Command R message),
// Meta Llama (prompt), Mistral (prompt; messages), Titan Embeddings
// (inputText), Cohere Embed (texts), Titan Image Generator (TEXT_IMAGE) and
// Stability (SDXL text_prompts; Stable Image prompt). Converse and
// ConverseStream serve every text family.
//
// # Token counts
//
// The server reports, and a meter must take from its answer rather than
// estimate:
//   - input tokens: the number of whitespace-separated words in all prompt
//     text of the request (system prompt, every message's text blocks, the
//     prompt string, embedding inputs, image prompts), whatever the family;
//   - output tokens: the number of words in the generated text (12 to 40
//     words, cut at the request's max-tokens limit); 0 for embeddings and
//     images;
//   - prompt caching (Claude and Nova; cache_control blocks, cachePoint
//     blocks): the words up to the last cache marker are reported as cache
//     write tokens on the first call and cache read tokens on calls within
//     Config.CacheTTL; input tokens then count only the rest. The sum is the
//     same either way.
//
// InvokeModel sends the counts in X-Amzn-Bedrock-Input-Token-Count,
// X-Amzn-Bedrock-Output-Token-Count (and X-Amzn-Bedrock-Cache-Read- and
// -Cache-Write-Input-Token-Count when the request had a cache marker), equal to
// the counts in the body where the family's body has them. Converse reports
// usage{inputTokens, outputTokens, totalTokens, cacheReadInputTokens,
// cacheWriteInputTokens} (totalTokens includes cache tokens) and
// metrics{latencyMs}; ConverseStream sends the same in its final metadata
// event; InvokeModelWithResponseStream puts amazon-bedrock-invocationMetrics
// {inputTokenCount, outputTokenCount, invocationLatency, firstByteLatency}
// in its last chunk. Answers and counts are deterministic: the same request
// gets the same text and counts (only ids, latencies and the cache split vary).
//
// # Errors
//
// Errors use Bedrock's shape (X-Amzn-ErrorType and {"message": …}), so the
// SDK returns its typed errors: ValidationException 400,
// AccessDeniedException 403, ResourceNotFoundException 404,
// ThrottlingException 429, ModelNotReadyException 429,
// InternalServerException 500, ServiceUnavailableException 503 and the
// others in errors.go. Any of them can be injected: per request with the
// header X-Meter-Inject-Error: <ExceptionName>, or with the marker
// [[meter-inject:<ExceptionName>]] in the prompt text, or for a share of all
// calls with Config.FailEvery/FailWith and Config.ErrorRates (both count
// the calls that passed validation). An unknown name in the header answers
// ValidationException. Routes other than the four answer
// UnknownOperationException (404).
// ModelStreamErrorException on a streaming call ends the stream halfway with
// an exception event. X-Meter-Latency overrides Config.Latency per request;
// X-Meter-Omit-Trail: true answers without a CloudTrail record.
//
// # CloudTrail
//
// Every runtime call, successful or failed, gets a record in CloudTrail's
// format (eventSource bedrock.amazonaws.com, eventName the operation,
// requestParameters.modelId as invoked, requestID equal to the
// X-Amzn-RequestId answered, userIdentity from the SigV4 access key id,
// errorCode and errorMessage for failures, additionalEventData.inferenceRegion).
// With Config.TrailDir set, records are delivered as
//
//	TrailDir/AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/
//	    <account>_CloudTrail_<region>_<YYYYMMDDTHHMMZ>_<unique>.json.gz
//
// gzip JSON {"Records": […]}, foldered and named by delivery time (so a
// day's last calls can land in the next day's folder), written to a hidden
// temporary file and renamed into place. LookupEvents returns the same
// records newest first, with one lookup attribute, StartTime/EndTime,
// MaxResults (1 to 50) and NextToken.
//
// # Request metadata and model invocation logs
//
// Request metadata (X-Amzn-Bedrock-Request-Metadata on InvokeModel and
// InvokeModelWithResponseStream, requestMetadata in Converse and ConverseStream
// bodies) is checked as Bedrock documents it (a JSON object of strings, at most
// 16 pairs, keys 1 to 256 and values at most 256 characters of
// [a-zA-Z0-9 :_@$#=/+,.-]; anything else is a ValidationException). With
// Config.InvocationLogDir set, every call gets a model invocation log record
// (schemaType ModelInvocationLog, requestId, operation, modelId, input and
// output token counts, errorCode, requestMetadata; no bodies), delivered like
// the trail files as gzipped JSON lines under
//
//	InvocationLogDir/AWSLogs/<account>/BedrockModelInvocationLogs/<region>/YYYY/MM/DD/HH/
//	    <YYYYMMDDTHHMMSSZ>_<unique>.json.gz
//
// X-Meter-Omit-Invocation-Log: true answers without a log record.
package bedrocklocal
