package kafka

import (
	"context"
	"fmt"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// MarkerHeader is the only header of a log-end marker: a record without key
// or value that the vault appends to a partition before it deletes every
// other record of it (see WithLogEndMarkers). Consumers of this package
// skip markers: the Consumer flags them (Record.Marker), the Subscriber
// never hands them out; both count them in the positions they commit.
//
// A marker carries no data, so a record that only looks like one (a
// producer could send it) loses nothing by being skipped.
const MarkerHeader = "tenantvault-marker"

// isMarker reports whether a record (franz-go's) is a log-end marker: no
// key, no value, and one header, MarkerHeader, with no value.
func isMarker(r *kgo.Record) bool {
	return len(r.Key) == 0 && len(r.Value) == 0 && len(r.Headers) == 1 &&
		r.Headers[0].Key == MarkerHeader && len(r.Headers[0].Value) == 0
}

// isMarkerMessage is isMarker for kafka-go's records.
func isMarkerMessage(m *kafkago.Message) bool {
	return len(m.Key) == 0 && len(m.Value) == 0 && len(m.Headers) == 1 &&
		m.Headers[0].Key == MarkerHeader && len(m.Headers[0].Value) == 0
}

// AdminOption tunes an Admin.
type AdminOption func(*adminOptions)

type adminOptions struct {
	markers         bool
	maxMessageBytes int
}

// WithTopicMaxMessageBytes gives every topic CreateTopic creates the
// topic config max.message.bytes = n: the largest record batch the
// brokers accept on it. n <= 0: the brokers' default.
func WithTopicMaxMessageBytes(n int) AdminOption {
	return func(o *adminOptions) { o.maxMessageBytes = n }
}

// WithLogEndMarkers makes DeleteRecords never delete the last record of a
// partition: where it would, it first appends a log-end marker (a record
// with MarkerHeader only, produced as the Admin's principal) and deletes up
// to, not including, it. A marker that is the last record of its partition
// is kept when the records before it are deleted.
//
// It is for the embedded broker. kfake rebuilds a partition's offsets from
// the records it finds on disk: a partition whose records were all deleted
// comes back from a restart empty at offset 0 (after a kill -9 always, after
// a clean Close too), and new records then get offsets that consumers have
// applied already. With one record left, the marker, the partition keeps
// its offsets. A Kafka cluster keeps a partition's log start offset itself
// and needs no markers.
//
// The Admin remembers the markers it produced while it lives; after a
// restart, the first deletion that empties a partition appends one more.
// Markers cost one record each time retention catches up with a partition
// that had new records, never more: the marker itself, once consumed, is
// kept rather than replaced.
func WithLogEndMarkers() AdminOption {
	return func(o *adminOptions) { o.markers = true }
}

// markers produces and remembers log-end markers for an Admin.
type markers struct {
	cl *kgo.Client // produces to the partition named (manual partitioner)

	mu sync.Mutex
	at map[topicPartition]int64 // offset of the last marker produced in each partition
}

type topicPartition struct {
	topic     string
	partition int32
}

func newMarkers(brokers []string, auth Auth) (*markers, error) {
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// A marker produced twice is harmless; no producer ID to keep.
		kgo.DisableIdempotentWrite(),
		kgo.ProducerLinger(0),
		kgo.MetadataMinAge(10 * time.Millisecond),
	}, auth.kgoOpts()...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	return &markers{cl: cl, at: make(map[topicPartition]int64)}, nil
}

// guard returns the offsets to delete below so that no partition of
// offsets is left empty: an offset at a partition's end offset is lowered
// to the partition's last record if that is a marker produced here, and
// otherwise a marker is appended first. A partition that cannot be guarded
// (its end offset unknown, its marker not produced) is left out, with an
// error. Offsets below the end, past it, and of topics the cluster does not
// have are passed on as they are (DeleteRecords reports the last two).
func (m *markers) guard(ctx context.Context, adm *kadm.Client, offsets kadm.Offsets) (kadm.Offsets, []error) {
	topics := make([]string, 0, len(offsets))
	for t := range offsets {
		topics = append(topics, t)
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil && len(ends) == 0 {
		return nil, []error{fmt.Errorf("delete records: end offsets (kept to leave no partition empty): %w", err)}
	}
	var (
		errs []error
		out  = make(kadm.Offsets, len(offsets))
		need []*kgo.Record
		wait = make(map[topicPartition]kadm.Offset)
	)
	m.mu.Lock()
	for topic, parts := range offsets {
		for p, o := range parts {
			end, ok := ends.Lookup(topic, p)
			switch {
			case !ok || isUnknownTopic(end.Err):
				out.Add(o) // DeleteRecords reports it
				continue
			case end.Err != nil:
				errs = append(errs, fmt.Errorf("delete records of %s: partition %d: end offset: %w", topic, p, end.Err))
				continue
			case o.At != end.Offset || end.Offset == 0:
				out.Add(o)
				continue
			}
			tp := topicPartition{topic, p}
			if at, ok := m.at[tp]; ok && at == end.Offset-1 {
				o.At = at // the marker is the last record: keep it
				out.Add(o)
				continue
			}
			need = append(need, &kgo.Record{Topic: topic, Partition: p, Headers: []kgo.RecordHeader{{Key: MarkerHeader}}})
			wait[tp] = o
		}
	}
	m.mu.Unlock()
	if len(need) == 0 {
		return out, errs
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	results := m.cl.ProduceSync(pctx, need...)
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range results {
		tp := topicPartition{r.Record.Topic, r.Record.Partition}
		if r.Err != nil {
			// Its metadata is read again next time (the topic may have
			// been deleted and created again by another client).
			m.cl.PurgeTopicsFromClient(tp.topic)
			errs = append(errs, fmt.Errorf("delete records of %s: partition %d: not deleted: log-end marker: %w", tp.topic, tp.partition, r.Err))
			continue
		}
		m.at[tp] = r.Record.Offset
		out.Add(wait[tp]) // up to the end before the marker: at or below it
	}
	return out, errs
}

// forget drops what is known of topic's markers, and the producer's
// metadata of it (deleted: a topic created again under its name starts at
// offset 0, with another topic ID).
func (m *markers) forget(topic string) {
	m.cl.PurgeTopicsFromClient(topic)
	m.mu.Lock()
	defer m.mu.Unlock()
	for tp := range m.at {
		if tp.topic == topic {
			delete(m.at, tp)
		}
	}
}

func (m *markers) close() {
	m.cl.Close()
}
