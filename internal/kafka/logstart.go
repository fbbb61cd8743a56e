package kafka

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// logStarts keeps, for the embedded broker, the log start offset that
// DeleteRecords last asked for in each partition, one small file per
// partition under <DataDir>/tenantvault/log-start/ named like kfake's
// partition directories.
//
// kfake forgets a partition's offsets when its log is empty on disk. It
// rebuilds them from the segment files it finds, and takes its snapshot
// (written on Close, holding the offsets) only along with at least one
// segment file: a partition whose records were all deleted, which the
// vault's ingress retention does to every partition it has caught up with,
// came back from any restart empty at offset 0. New records then got
// offsets the vault had applied already, and were skipped as duplicates.
// Before kfake loads the DataDir, restoreEmptied gives each partition that
// holds no records, and whose end offset is known (from here or from
// kfake's snapshot), an empty segment file at that offset and a snapshot
// to match, which kfake restores.
//
// An offset asked for is kept before kfake answers the request, so it may
// be one kfake refused (past the partition's end): restored, it moves the
// partition's offsets forward, never back. DeleteRecords with offset -1
// ("up to the end") is not kept. A partition emptied by retention.ms
// (kfake's own) keeps its offsets across a clean restart only.
type logStarts struct {
	dir   string // <DataDir>/tenantvault/log-start
	parts string // <DataDir>/partitions, kfake's
	sync  bool
	m     map[topicPartition]int64
}

type topicPartition struct {
	topic     string
	partition int32
}

// partitionName names topic's partition p as kfake names its directory.
func partitionName(topic string, p int32) string {
	return url.PathEscape(topic) + "-" + strconv.FormatInt(int64(p), 10)
}

// parsePartitionName is the inverse of partitionName.
func parsePartitionName(name string) (topic string, p int32, ok bool) {
	i := strings.LastIndexByte(name, '-')
	if i <= 0 {
		return "", 0, false
	}
	topic, err := url.PathUnescape(name[:i])
	if err != nil {
		return "", 0, false
	}
	n, err := strconv.ParseInt(name[i+1:], 10, 32)
	if err != nil || n < 0 {
		return "", 0, false
	}
	return topic, int32(n), true
}

func loadLogStarts(dataDir string, sync bool) (*logStarts, error) {
	l := &logStarts{
		dir:   filepath.Join(dataDir, "tenantvault", "log-start"),
		parts: filepath.Join(dataDir, "partitions"),
		sync:  sync,
		m:     make(map[topicPartition]int64),
	}
	if err := os.MkdirAll(l.dir, 0o700); err != nil {
		return nil, fmt.Errorf("log start offsets: %w", err)
	}
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return nil, fmt.Errorf("log start offsets: %w", err)
	}
	for _, ent := range entries {
		topic, p, ok := parsePartitionName(ent.Name())
		if !ok || !ent.Type().IsRegular() {
			continue // a temporary file a crash left
		}
		b, err := os.ReadFile(filepath.Join(l.dir, ent.Name()))
		if err != nil {
			return nil, fmt.Errorf("log start offsets: %w", err)
		}
		o, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || o < 0 {
			continue
		}
		l.m[topicPartition{topic, p}] = o
	}
	return l, nil
}

// raise keeps offset as the log start offset of topic's partition p if it
// is above the one kept.
func (l *logStarts) raise(topic string, p int32, offset int64) error {
	tp := topicPartition{topic, p}
	if l == nil || offset <= l.m[tp] {
		return nil
	}
	name := partitionName(topic, p)
	tmp, err := os.CreateTemp(l.dir, name+".tmp*")
	if err != nil {
		return err
	}
	_, err = tmp.WriteString(strconv.FormatInt(offset, 10) + "\n")
	if err == nil && l.sync {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(l.dir, name))
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	if l.sync {
		if err := syncDir(l.dir); err != nil {
			return err
		}
	}
	l.m[tp] = offset
	return nil
}

// forgetTopic drops what is kept of topic (deleted: a topic created again
// under its name starts at offset 0).
func (l *logStarts) forgetTopic(topic string) {
	l.forgetUnless(func(t string, _ int32) bool { return t != topic })
}

// forgetUnless drops what is kept of the partitions keep refuses.
func (l *logStarts) forgetUnless(keep func(topic string, p int32) bool) {
	if l == nil {
		return
	}
	for tp := range l.m {
		if !keep(tp.topic, tp.partition) {
			_ = os.Remove(filepath.Join(l.dir, partitionName(tp.topic, tp.partition)))
			delete(l.m, tp)
		}
	}
}

// restoreEmptied prepares every partition directory that holds no records
// and whose end offset is known so that kfake restores that offset: an
// empty segment file at it, and a snapshot of an empty log from it.
func (l *logStarts) restoreEmptied(log *slog.Logger) error {
	entries, err := os.ReadDir(l.parts)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read partitions: %w", err)
	}
	for _, ent := range entries {
		topic, p, ok := parsePartitionName(ent.Name())
		if !ok || !ent.IsDir() {
			continue
		}
		pdir := filepath.Join(l.parts, ent.Name())
		n, err := l.restoreEmptiedPartition(pdir, l.m[topicPartition{topic, p}])
		if err != nil {
			return fmt.Errorf("restore offsets of %s: %w", ent.Name(), err)
		}
		if n > 0 {
			log.Info("embedded broker: kept the offsets of a partition whose records were all deleted",
				"topic", topic, "partition", p, "offset", n)
		}
	}
	return nil
}

// restoreEmptiedPartition does restoreEmptied's work for one partition
// directory, given the log start offset kept for it, and returns the
// offset it restored, 0 if none.
func (l *logStarts) restoreEmptiedPartition(pdir string, kept int64) (int64, error) {
	files, err := os.ReadDir(pdir)
	if err != nil {
		return 0, err
	}
	var empty []string // segment and index files without a record
	for _, f := range files {
		name := f.Name()
		if !strings.HasSuffix(name, ".dat") && !strings.HasSuffix(name, ".idx") {
			continue
		}
		info, err := f.Info()
		if err != nil {
			return 0, err
		}
		if strings.HasSuffix(name, ".dat") && info.Size() > 0 {
			return 0, nil // records: kfake finds the offsets in them
		}
		empty = append(empty, name)
	}
	// kfake's snapshot, as far as this reads it: the fields written here
	// are set, every other one is kept as it is.
	snap := map[string]json.RawMessage{}
	snapPath := filepath.Join(pdir, "snapshot.json")
	var hwm int64
	if b, err := os.ReadFile(snapPath); err == nil {
		if json.Unmarshal(b, &snap) != nil {
			snap = map[string]json.RawMessage{}
		}
		_ = json.Unmarshal(snap["high_watermark"], &hwm)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return 0, err
	}
	n := max(kept, hwm)
	if n <= 0 {
		return 0, nil
	}
	for _, name := range empty {
		if err := os.Remove(filepath.Join(pdir, name)); err != nil {
			return 0, err
		}
	}
	seg, err := os.OpenFile(filepath.Join(pdir, strconv.FormatInt(n, 10)+".dat"), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, err
	}
	if err := seg.Close(); err != nil {
		return 0, err
	}
	set := func(k string, v any) {
		b, _ := json.Marshal(v)
		snap[k] = b
	}
	if _, ok := snap["version"]; !ok {
		set("version", 1)
	}
	if _, ok := snap["created_at"]; !ok {
		set("created_at", time.Now().UTC())
	}
	set("high_watermark", n)
	set("last_stable_offset", n)
	set("log_start_offset", n)
	set("segments", []map[string]int64{{"base_offset": n, "size": 0}})
	b, err := json.Marshal(snap)
	if err != nil {
		return 0, err
	}
	tmp := snapPath + ".tenantvault.tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, snapPath); err != nil {
		return 0, err
	}
	return n, nil
}

// syncDir fsyncs a directory, so that a rename in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
