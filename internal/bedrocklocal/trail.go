package bedrocklocal

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// trailEvent is one CloudTrail record of a Bedrock Runtime call, in
// CloudTrail's own field names and order.
type trailEvent struct {
	EventVersion        string               `json:"eventVersion"`
	UserIdentity        userIdentity         `json:"userIdentity"`
	EventTime           string               `json:"eventTime"`
	EventSource         string               `json:"eventSource"`
	EventName           string               `json:"eventName"`
	AWSRegion           string               `json:"awsRegion"`
	SourceIPAddress     string               `json:"sourceIPAddress"`
	UserAgent           string               `json:"userAgent"`
	ErrorCode           string               `json:"errorCode,omitempty"`
	ErrorMessage        string               `json:"errorMessage,omitempty"`
	RequestParameters   map[string]string    `json:"requestParameters"`
	ResponseElements    any                  `json:"responseElements"`
	AdditionalEventData map[string]string    `json:"additionalEventData,omitempty"`
	RequestID           string               `json:"requestID"`
	EventID             string               `json:"eventID"`
	ReadOnly            bool                 `json:"readOnly"`
	Resources           []trailEventResource `json:"resources,omitempty"`
	EventType           string               `json:"eventType"`
	ManagementEvent     bool                 `json:"managementEvent"`
	RecipientAccountID  string               `json:"recipientAccountId"`
	EventCategory       string               `json:"eventCategory"`
}

type userIdentity struct {
	Type        string `json:"type"`
	PrincipalID string `json:"principalId"`
	ARN         string `json:"arn,omitempty"`
	AccountID   string `json:"accountId"`
	AccessKeyID string `json:"accessKeyId,omitempty"`
	UserName    string `json:"userName,omitempty"`
}

type trailEventResource struct {
	AccountID string `json:"accountId,omitempty"`
	Type      string `json:"type"`
	ARN       string `json:"ARN"`
}

const eventSource = "bedrock.amazonaws.com"

// accessKeyID reads the access key id from a SigV4 Authorization header
// ("AWS4-HMAC-SHA256 Credential=AKID/date/region/service/aws4_request, ...")
// or a presigned URL's X-Amz-Credential.
func accessKeyID(r *http.Request) string {
	cred := r.URL.Query().Get("X-Amz-Credential")
	if _, rest, ok := strings.Cut(r.Header.Get("Authorization"), "Credential="); ok {
		cred = rest
	}
	key, _, _ := strings.Cut(cred, "/")
	return strings.TrimSpace(key)
}

// identity builds CloudTrail's userIdentity for an access key: long-term
// keys (AKIA…) as IAM users, temporary ones (ASIA…) as assumed roles.
func (s *Server) identity(key string) (userIdentity, string) {
	acct := s.cfg.AccountID
	if key == "" {
		return userIdentity{Type: "AWSAccount", PrincipalID: acct, AccountID: acct}, ""
	}
	uid := strings.ToUpper(fmt.Sprintf("%016x", seedOf(key)))
	name := s.cfg.Users[key]
	if strings.HasPrefix(key, "ASIA") {
		role, session, ok := strings.Cut(name, "/")
		if !ok {
			role, session = "bedrock-local", key
		}
		return userIdentity{
			Type:        "AssumedRole",
			PrincipalID: "AROA" + uid + ":" + session,
			ARN:         "arn:aws:sts::" + acct + ":assumed-role/" + role + "/" + session,
			AccountID:   acct,
			AccessKeyID: key,
		}, session
	}
	if name == "" {
		name = "bedrock-local"
	}
	return userIdentity{
		Type:        "IAMUser",
		PrincipalID: "AIDA" + uid,
		ARN:         "arn:aws:iam::" + acct + ":user/" + name,
		AccountID:   acct,
		AccessKeyID: key,
		UserName:    name,
	}, name
}

// modelARN is the ARN of the resource a model id names.
func (s *Server) modelARN(id string) (typ, arn string) {
	if strings.HasPrefix(id, "arn:") {
		return "AWS::Bedrock::Model", id
	}
	if geo, _ := splitProfile(id); geo != "" {
		return "AWS::Bedrock::InferenceProfile", "arn:aws:bedrock:" + s.cfg.Region + ":" + s.cfg.AccountID + ":inference-profile/" + id
	}
	return "AWS::Bedrock::Model", "arn:aws:bedrock:" + s.cfg.Region + "::foundation-model/" + id
}

// record builds the CloudTrail record of a finished call.
func (s *Server) record(r *http.Request, c *call, failure *apiError) lookupEntry {
	key := accessKeyID(r)
	ident, username := s.identity(key)
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		ip = r.RemoteAddr
	}
	resType, resARN := s.modelARN(c.modelID)
	ev := trailEvent{
		EventVersion:        "1.09",
		UserIdentity:        ident,
		EventTime:           c.at.UTC().Format("2006-01-02T15:04:05Z"),
		EventSource:         eventSource,
		EventName:           c.op.name,
		AWSRegion:           s.cfg.Region,
		SourceIPAddress:     ip,
		UserAgent:           r.UserAgent(),
		RequestParameters:   map[string]string{"modelId": c.modelID},
		AdditionalEventData: map[string]string{"inferenceRegion": c.inferenceRegion},
		RequestID:           c.requestID,
		EventID:             newUUID(),
		ReadOnly:            true,
		Resources:           []trailEventResource{{AccountID: s.cfg.AccountID, Type: resType, ARN: resARN}},
		EventType:           "AwsApiCall",
		ManagementEvent:     true,
		RecipientAccountID:  s.cfg.AccountID,
		EventCategory:       "Management",
	}
	if c.inferenceRegion == "" {
		ev.AdditionalEventData = nil
	}
	if failure != nil {
		ev.ErrorCode, ev.ErrorMessage = failure.kind, failure.message
	}
	raw, _ := json.Marshal(ev)
	return lookupEntry{
		time:        c.at.UTC().Truncate(time.Second),
		eventID:     ev.EventID,
		eventName:   ev.EventName,
		username:    username,
		accessKeyID: key,
		resType:     resType,
		resName:     resARN,
		raw:         raw,
	}
}

// lookupEntry is a record with the attributes LookupEvents filters on.
type lookupEntry struct {
	seq         int64
	time        time.Time
	eventID     string
	eventName   string
	username    string
	accessKeyID string
	resType     string
	resName     string
	raw         json.RawMessage
}

// trail buffers records for delivery as log files and keeps them for
// LookupEvents.
type trail struct {
	dir, account, region string
	retention            int
	now                  func() time.Time

	mu      sync.Mutex
	seq     int64
	entries []lookupEntry // oldest first

	delivery // of trail files, when dir is set
}

func newTrail(cfg Config) *trail {
	t := &trail{
		dir: cfg.TrailDir, account: cfg.AccountID, region: cfg.Region,
		retention: cfg.LookupRetention, now: cfg.Now,
	}
	t.delivery = delivery{batch: cfg.TrailBatch, write: t.write}
	return t
}

func (t *trail) add(e lookupEntry) {
	t.mu.Lock()
	t.seq++
	e.seq = t.seq
	t.entries = append(t.entries, e)
	if len(t.entries) > t.retention+t.retention/4 {
		t.entries = append([]lookupEntry(nil), t.entries[len(t.entries)-t.retention:]...)
	}
	t.mu.Unlock()
	if t.dir != "" {
		t.delivery.add(e.raw)
	}
}

// write delivers records as one trail file, foldered and named by delivery
// time.
func (t *trail) write(records [][]byte) error {
	at := t.now().UTC()
	dir := filepath.Join(t.dir, "AWSLogs", t.account, "CloudTrail", t.region, at.Format("2006"), at.Format("01"), at.Format("02"))
	name := fmt.Sprintf("%s_CloudTrail_%s_%s_%s.json.gz", t.account, t.region, at.Format("20060102T1504Z"), randomAlnum(16))
	raw := make([]json.RawMessage, len(records))
	for i, r := range records {
		raw[i] = r
	}
	body, err := json.Marshal(struct {
		Records []json.RawMessage `json:"Records"`
	}{raw})
	if err == nil {
		err = writeGzipFile(dir, name, body)
	}
	if err != nil {
		return fmt.Errorf("delivering trail file %s: %w", name, err)
	}
	return nil
}

// snapshot returns the retained entries, oldest first.
func (t *trail) snapshot() []lookupEntry {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.entries[:len(t.entries):len(t.entries)]
}
