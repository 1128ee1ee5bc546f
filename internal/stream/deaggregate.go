package stream

import (
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// Deaggregate returns the user records one Kinesis record holds, as a consumer
// reading with GetRecords would see them: itself, or the records of a Kinesis
// Producer Library aggregate with sub-sequence numbers. The Lambda event source
// hands records over undecoded, so the Lambda handler calls this.
func Deaggregate(shardID, sequence, partitionKey string, arrival time.Time, data []byte) []Record {
	return deaggregateKinesis(shardID, types.Record{SequenceNumber: aws.String(sequence), PartitionKey: aws.String(partitionKey),
		ApproximateArrivalTimestamp: aws.Time(arrival), Data: data})
}
