package kafka

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ErrTopicNotFound is returned (wrapped) for an operation on a topic the
// cluster does not have.
var ErrTopicNotFound = errors.New("topic not found")

// ErrTopicRecreated is returned (wrapped) by DeleteRecordsMany for a topic
// whose topic ID is no longer the one the offsets were read with: deleted
// and created again, its offsets name other records.
var ErrTopicRecreated = errors.New("topic deleted and created again")

// ErrTopicCollision is returned (wrapped) by CreateTopic for a name that
// collides with a topic the cluster has: Kafka's metric names do not tell
// '.' from '_', so it refuses a topic that differs from an existing one only
// in those (tenant.a.events and tenant_a_events).
var ErrTopicCollision = errors.New("topic name collides with an existing topic")

// Admin does topic administration over the Kafka protocol (franz-go's kadm).
// It is safe for concurrent use.
type Admin struct {
	cl      *kgo.Client
	adm     *kadm.Client
	markers *markers           // nil unless WithLogEndMarkers
	configs map[string]*string // of topics CreateTopic creates
}

// NewAdmin returns an Admin for the cluster reachable at brokers,
// authenticating as auth. It does not connect until the first call.
func NewAdmin(brokers []string, auth Auth, opts ...AdminOption) (*Admin, error) {
	var o adminOptions
	for _, opt := range opts {
		opt(&o)
	}
	if len(brokers) == 0 {
		return nil, errors.New("new admin: no brokers")
	}
	if err := auth.Validate(); err != nil {
		return nil, fmt.Errorf("new admin: %w", err)
	}
	// kadm answers from metadata cached for MetadataMinAge (kgo's default
	// 5s), so a topic just deleted would still be listed: keep it short.
	kopts := append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.MetadataMinAge(10 * time.Millisecond)}, auth.kgoOpts()...)
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("new admin: %w", err)
	}
	a := &Admin{cl: cl, adm: kadm.NewClient(cl)}
	if o.maxMessageBytes > 0 {
		n := strconv.Itoa(o.maxMessageBytes)
		a.configs = map[string]*string{"max.message.bytes": &n}
	}
	if o.markers {
		if a.markers, err = newMarkers(brokers, auth); err != nil {
			cl.Close()
			return nil, fmt.Errorf("new admin: %w", err)
		}
	}
	return a, nil
}

// CreateTopic creates topic with the given number of partitions (<= 0: the
// broker's default) and the broker's default replication factor. It is
// idempotent: a topic that already exists is not an error, whatever its
// partition count.
func (a *Admin) CreateTopic(ctx context.Context, topic string, partitions int) error {
	return a.createTopic(ctx, topic, partitions, a.configs)
}

// createTopic is CreateTopic with the topic configs configs.
func (a *Admin) createTopic(ctx context.Context, topic string, partitions int, configs map[string]*string) error {
	if !validTopicName(topic) { // kfake does not check
		return fmt.Errorf("create topic %.260q: invalid name: want 1 to 249 characters of [a-zA-Z0-9._-]", topic)
	}
	// Checked before asking, as Kafka would refuse it (kfake does too, with
	// INVALID_TOPIC_EXCEPTION, which tells nothing of the cause).
	if err := a.checkCollision(ctx, topic); err != nil {
		return err
	}
	n := int32(partitions)
	if partitions <= 0 {
		n = -1
	}
	_, err := a.adm.CreateTopic(ctx, n, -1, configs, topic)
	a.cl.PurgeTopicsFromClient(topic)
	if errors.Is(err, kerr.InvalidTopicException) {
		// A colliding topic created meanwhile?
		if cerr := a.checkCollision(ctx, topic); cerr != nil {
			return cerr
		}
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	return nil
}

// checkCollision returns an error wrapping ErrTopicCollision if the cluster
// has a topic whose name differs from topic's only in '.' and '_'.
func (a *Admin) checkCollision(ctx context.Context, topic string) error {
	// Only the names that could collide are asked for (a tenant topic has
	// three), not every topic: the vault ensures each tenant's topic at
	// start, and listing them all each time would cost the square of their
	// number.
	candidates := collisionCandidates(topic)
	if candidates != nil && len(candidates) == 0 {
		return nil
	}
	names, err := a.topicNames(ctx, candidates)
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	// The other name is not told: anyone who reaches the broker may have
	// made it up (it differs from topic only in '.' and '_').
	if _, ok := collidingTopic(topic, names); ok {
		return fmt.Errorf("create topic %s: %w ('.' and '_' read alike)", topic, ErrTopicCollision)
	}
	return nil
}

// topicNames returns the names of the cluster's topics (not internal
// ones), asked of a
// broker now: kadm's ListTopics answers from metadata up to MetadataMinAge
// old, which may not hold a topic just created.
//
// With names not nil, only those of them that exist are returned.
func (a *Admin) topicNames(ctx context.Context, names []string) ([]string, error) {
	req := kmsg.NewPtrMetadataRequest() // nil Topics: all of them
	req.AllowAutoTopicCreation = false  // asking for a name must not create it
	for _, n := range names {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(n)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, a.cl)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	names = make([]string, 0, len(resp.Topics))
	for _, t := range resp.Topics {
		if t.Topic != nil && t.ErrorCode == 0 && !t.IsInternal {
			names = append(names, *t.Topic)
		}
	}
	return names, nil
}

// maxCandidateSeparators bounds the '.' and '_' of a name whose colliding
// names collisionCandidates spells out (2^n of them); past it, every topic
// is listed.
const maxCandidateSeparators = 8

// collisionCandidates returns the names that collide with topic (each '.'
// or '_' of it as either), topic itself left out; nil (every topic) for a
// name with more than maxCandidateSeparators of them.
func collisionCandidates(topic string) []string {
	var seps []int
	for i := range len(topic) {
		if topic[i] == '.' || topic[i] == '_' {
			seps = append(seps, i)
		}
	}
	if len(seps) == 0 || len(seps) > maxCandidateSeparators {
		if len(seps) == 0 {
			return []string{} // nothing collides: ask for no topic
		}
		return nil
	}
	out := make([]string, 0, 1<<len(seps)-1)
	for mask := range 1 << len(seps) {
		b := []byte(topic)
		for j, i := range seps {
			if mask&(1<<j) != 0 {
				b[i] = '_'
			} else {
				b[i] = '.'
			}
		}
		if n := string(b); n != topic {
			out = append(out, n)
		}
	}
	return out
}

// collidingTopic returns the first of names that collides with topic: not
// topic itself, but equal to it once every '.' is read as '_'.
func collidingTopic(topic string, names []string) (string, bool) {
	key := strings.ReplaceAll(topic, ".", "_")
	for _, n := range names {
		if n != topic && strings.ReplaceAll(n, ".", "_") == key {
			return n, true
		}
	}
	return "", false
}

// ListTopics returns the names of the cluster's topics, sorted, without
// internal topics.
func (a *Admin) ListTopics(ctx context.Context) ([]string, error) {
	names, err := a.topicNames(ctx, nil)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// DeleteTopic deletes topic and its records (and its committed offsets in
// every group). A topic that does not exist is an error wrapping
// ErrTopicNotFound.
//
// Stop every subscription to the topic first: kafka-go's consumers look up
// their topics with auto-creation allowed, so a live subscription brings a
// deleted topic back (empty).
func (a *Admin) DeleteTopic(ctx context.Context, topic string) error {
	_, err := a.adm.DeleteTopic(ctx, topic)
	a.cl.PurgeTopicsFromClient(topic)
	if a.markers != nil {
		a.markers.forget(topic)
	}
	switch {
	case errors.Is(err, kerr.UnknownTopicOrPartition) || errors.Is(err, kerr.UnknownTopicID):
		return fmt.Errorf("delete topic %s: %w", topic, ErrTopicNotFound)
	case err != nil:
		return fmt.Errorf("delete topic %s: %w", topic, err)
	}
	return nil
}

// DeleteRecords deletes the records of topic whose offset is below
// before[partition], in each partition named: Kafka's DeleteRecords, which
// moves the partition's log start offset to before[partition]. On the
// embedded broker their bytes leave the disk with it (see
// EmbeddedConfig.SegmentBytes); on a Kafka cluster, when the broker
// deletes their segment files.
//
// It is idempotent: an offset at or below the partition's log start offset
// deletes nothing and is not an error. An offset past the partition's end
// offset is an error wrapping kerr.OffsetOutOfRange and deletes nothing in
// that partition (the offset was not read from this topic: it was deleted
// and created again, smaller); so is a negative offset. Other partitions
// are done all the same. A topic that does not exist is an error wrapping
// ErrTopicNotFound.
//
// With WithLogEndMarkers, a partition is never left without a record: an
// offset at its end appends a log-end marker first, or keeps the marker
// that is its last record.
func (a *Admin) DeleteRecords(ctx context.Context, topic string, before map[int]int64) error {
	return a.DeleteRecordsMany(ctx, map[string]map[int]int64{topic: before}, nil)
}

// DeleteRecordsMany is DeleteRecords for several topics at once, in one
// request per broker leading any of their partitions. Each topic's error
// is reported as DeleteRecords reports it, joined.
//
// ids names, for the topics it holds, the topic ID (hex) the offsets were
// read with. Kafka deletes records by topic name only: a topic deleted and
// created again under the same name would lose records its consumers have
// not read. So a topic whose ID is not ids' any more (also after a log-end
// marker was produced, whose retries could have landed in the new topic)
// is left out, with an error wrapping ErrTopicRecreated.
func (a *Admin) DeleteRecordsMany(ctx context.Context, before map[string]map[int]int64, ids map[string]string) error {
	offsets := make(kadm.Offsets, len(before))
	var errs []error
	for topic, parts := range before {
		for p, o := range parts {
			if o < 0 { // kadm's -1 would mean "up to the end"
				errs = append(errs, fmt.Errorf("delete records of %s: partition %d: negative offset %d: %w", topic, p, o, kerr.OffsetOutOfRange))
				continue
			}
			offsets.Add(kadm.Offset{Topic: topic, Partition: int32(p), At: o, LeaderEpoch: -1})
		}
	}
	errs = append(errs, a.keepSameTopics(ctx, offsets, ids)...)
	if a.markers != nil && len(offsets) > 0 {
		var merrs []error
		offsets, merrs = a.markers.guard(ctx, a.adm, offsets)
		errs = append(errs, merrs...)
		errs = append(errs, a.keepSameTopics(ctx, offsets, ids)...)
	}
	if len(offsets) == 0 {
		return errors.Join(errs...)
	}
	resps, err := a.adm.DeleteRecords(ctx, offsets)
	var outOfRange []string
	for topic, parts := range offsets {
		var terrs []error
		if len(resps[topic]) == 0 && err != nil {
			terr := err
			if isUnknownTopic(err) {
				a.cl.PurgeTopicsFromClient(topic)
				terr = ErrTopicNotFound
			}
			errs = append(errs, fmt.Errorf("delete records of %s: %w", topic, terr))
			continue
		}
		for p, o := range parts {
			r, ok := resps[topic][p]
			switch {
			case !ok: // a shard error: an unknown partition, a broker that failed
				terrs = append(terrs, fmt.Errorf("partition %d: offset %d: not deleted: %w", p, o.At, cmp.Or(err, errors.New("no answer"))))
			case errors.Is(r.Err, kerr.OffsetOutOfRange):
				outOfRange = append(outOfRange, topic)
			case isUnknownTopic(r.Err):
				a.cl.PurgeTopicsFromClient(topic)
				terrs = append(terrs, fmt.Errorf("partition %d: %w", p, ErrTopicNotFound))
			case r.Err != nil:
				terrs = append(terrs, fmt.Errorf("partition %d: %w", p, r.Err))
			}
		}
		if err := errors.Join(terrs...); err != nil {
			errs = append(errs, fmt.Errorf("delete records of %s: %w", topic, err))
		}
	}
	if len(outOfRange) > 0 {
		errs = append(errs, a.belowStart(ctx, offsets, resps, outOfRange)...)
	}
	return errors.Join(errs...)
}

// keepSameTopics removes from offsets the topics whose topic ID is not the
// one ids names (a topic ids does not name, or names with "", is kept), and
// returns their errors. A topic missing from the cluster is kept:
// DeleteRecords reports it.
func (a *Admin) keepSameTopics(ctx context.Context, offsets kadm.Offsets, ids map[string]string) []error {
	var check []string
	for topic := range offsets {
		if ids[topic] != "" {
			check = append(check, topic)
		}
	}
	if len(check) == 0 {
		return nil
	}
	td, err := a.adm.ListTopics(ctx, check...)
	if err != nil {
		for _, topic := range check {
			delete(offsets, topic)
		}
		return []error{fmt.Errorf("delete records: topic ids: %w", err)}
	}
	var errs []error
	for _, topic := range check {
		d, ok := td[topic]
		if !ok || d.Err != nil || d.ID == (kadm.TopicID{}) {
			continue
		}
		if id := hex.EncodeToString(d.ID[:]); id != ids[topic] {
			delete(offsets, topic)
			errs = append(errs, fmt.Errorf("delete records of %s: topic id %s, the offsets are of %s: %w", topic, id, ids[topic], ErrTopicRecreated))
		}
	}
	return errs
}

// belowStart sorts out the partitions of outOfRange topics that Kafka
// refused with OffsetOutOfRange: an offset below the log start offset names
// records gone already, which is what was asked; one past the end is an
// error.
func (a *Admin) belowStart(ctx context.Context, offsets kadm.Offsets, resps kadm.DeleteRecordsResponses, outOfRange []string) []error {
	var errs []error
	starts, err := a.adm.ListStartOffsets(ctx, outOfRange...)
	if err == nil {
		err = starts.Error()
	}
	seen := map[string]bool{}
	for _, topic := range outOfRange {
		if seen[topic] {
			continue
		}
		seen[topic] = true
		var terrs []error
		for p, o := range offsets[topic] {
			if r, ok := resps[topic][p]; !ok || !errors.Is(r.Err, kerr.OffsetOutOfRange) {
				continue
			}
			switch s, ok := starts.Lookup(topic, p); {
			case err != nil:
				terrs = append(terrs, fmt.Errorf("partition %d: offset %d: %w (and its log start offset: %w)", p, o.At, kerr.OffsetOutOfRange, err))
			case ok && o.At <= s.Offset:
			default:
				terrs = append(terrs, fmt.Errorf("partition %d: offset %d is past the end of the partition: %w", p, o.At, kerr.OffsetOutOfRange))
			}
		}
		if err := errors.Join(terrs...); err != nil {
			errs = append(errs, fmt.Errorf("delete records of %s: %w", topic, err))
		}
	}
	return errs
}

// LogStartOffsets returns the log start offset of each of topic's
// partitions: the offset of its earliest record that was not deleted (its
// end offset if all were). A topic that does not exist is an error wrapping
// ErrTopicNotFound.
func (a *Admin) LogStartOffsets(ctx context.Context, topic string) (map[int]int64, error) {
	listed, err := a.adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = listed.Error()
	}
	if err == nil && len(listed[topic]) == 0 {
		err = kerr.UnknownTopicOrPartition
	}
	if err != nil {
		if isUnknownTopic(err) {
			a.cl.PurgeTopicsFromClient(topic)
			err = ErrTopicNotFound
		}
		return nil, fmt.Errorf("log start offsets of %s: %w", topic, err)
	}
	out := make(map[int]int64, len(listed[topic]))
	for p, o := range listed[topic] {
		out[int(p)] = o.Offset
	}
	return out, nil
}

func isUnknownTopic(err error) bool {
	return errors.Is(err, kerr.UnknownTopicOrPartition) || errors.Is(err, kerr.UnknownTopicID)
}

// DeleteGroup deletes the consumer group and its committed offsets. A group
// that does not exist is not an error. A group with members is (wrapping
// kerr.NonEmptyGroup): stop its consumers first (Subscriber.Unsubscribe,
// or the ingest runner's Remove).
func (a *Admin) DeleteGroup(ctx context.Context, group string) error {
	_, err := a.adm.DeleteGroup(ctx, group)
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return fmt.Errorf("delete group %s: %w", group, err)
	}
	return nil
}

// Close releases the Admin's connections.
func (a *Admin) Close() error {
	if a.markers != nil {
		a.markers.close()
	}
	a.cl.Close()
	return nil
}
