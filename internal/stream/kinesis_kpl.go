package stream

import (
	"bytes"
	"crypto/md5"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"google.golang.org/protobuf/encoding/protowire"
)

// kplMagic starts every record the Kinesis Producer Library aggregated:
// magic, protobuf AggregatedRecord, then the MD5 of the protobuf bytes.
var kplMagic = []byte{0xF3, 0x89, 0x9A, 0xC2}

// Field numbers of the KPL's AggregatedRecord and Record messages.
const (
	kplPartitionKeyTable = 1 // AggregatedRecord: repeated string
	kplRecords           = 3 // AggregatedRecord: repeated Record
	kplPartitionKeyIndex = 1 // Record: uint64
	kplData              = 3 // Record: bytes
)

// deaggregateKinesis turns one Kinesis record into the user records it holds:
// itself, or for a KPL aggregate one record per contained user record with the
// sub-sequence number "SEQUENCE:NNNNN". A record that only looks aggregated
// (bad checksum, malformed body) is kept whole, as the KCL does.
func deaggregateKinesis(shardID string, r types.Record) []Record {
	rec := Record{
		ShardID:        shardID,
		SequenceNumber: aws.ToString(r.SequenceNumber),
		PartitionKey:   aws.ToString(r.PartitionKey),
		Arrival:        aws.ToTime(r.ApproximateArrivalTimestamp),
		Data:           r.Data,
	}
	users, err := decodeKPLAggregate(r.Data)
	if err != nil {
		return []Record{rec}
	}
	out := make([]Record, len(users))
	for i, u := range users {
		out[i] = rec
		out[i].SequenceNumber = fmt.Sprintf("%s:%05d", rec.SequenceNumber, i)
		out[i].PartitionKey = u.partitionKey
		out[i].Data = u.data
	}
	return out
}

type kplUserRecord struct {
	partitionKey string
	data         []byte
}

var errNotAggregated = errors.New("not a KPL aggregated record")

// decodeKPLAggregate decodes a KPL aggregated record.
func decodeKPLAggregate(b []byte) ([]kplUserRecord, error) {
	if len(b) < len(kplMagic)+md5.Size || !bytes.HasPrefix(b, kplMagic) {
		return nil, errNotAggregated
	}
	body := b[len(kplMagic) : len(b)-md5.Size]
	sum := md5.Sum(body)
	if !bytes.Equal(sum[:], b[len(b)-md5.Size:]) {
		return nil, fmt.Errorf("%w: checksum mismatch", errNotAggregated)
	}
	type indexed struct {
		key  uint64
		data []byte
	}
	var keys []string
	var recs []indexed
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		body = body[n:]
		switch {
		case num == kplPartitionKeyTable && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(body)
			if m < 0 {
				return nil, protowire.ParseError(m)
			}
			keys = append(keys, string(v))
			n = m
		case num == kplRecords && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(body)
			if m < 0 {
				return nil, protowire.ParseError(m)
			}
			key, data, err := decodeKPLRecord(v)
			if err != nil {
				return nil, err
			}
			recs = append(recs, indexed{key, data})
			n = m
		default: // explicit hash keys and unknown fields
			n = protowire.ConsumeFieldValue(num, typ, body)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
		}
		body = body[n:]
	}
	out := make([]kplUserRecord, len(recs))
	for i, r := range recs {
		if r.key >= uint64(len(keys)) {
			return nil, fmt.Errorf("%w: partition key index %d of %d", errNotAggregated, r.key, len(keys))
		}
		out[i] = kplUserRecord{partitionKey: keys[r.key], data: r.data}
	}
	return out, nil
}

func decodeKPLRecord(b []byte) (key uint64, data []byte, err error) {
	var haveKey, haveData bool
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, nil, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == kplPartitionKeyIndex && typ == protowire.VarintType:
			key, n = protowire.ConsumeVarint(b)
			haveKey = true
		case num == kplData && typ == protowire.BytesType:
			data, n = protowire.ConsumeBytes(b)
			haveData = true
		default: // explicit hash key index, tags
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return 0, nil, protowire.ParseError(n)
		}
		b = b[n:]
	}
	if !haveKey || !haveData {
		return 0, nil, fmt.Errorf("%w: user record without partition key index or data", errNotAggregated)
	}
	return key, data, nil
}
