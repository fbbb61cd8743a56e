package audit

import "strconv"

// Details keys of aggregated records. Records of a kind anyone can cause
// without a credential — an unauthenticated request (a wrong or missing
// token), records on the topic of an unknown tenant (ingest.skip) — are
// aggregated per source per interval by the vault: the first occurrence of
// a window is recorded at once, with DetailSource; the others are counted,
// and one aggregate record, with the same principal, action, outcome and
// reason, says how many there were (DetailAggregated), when
// (DetailFirst, DetailLast) and from where (DetailSource) when the window
// closes. An aggregate record is an ordinary record of the chain, so its
// counts are as verifiable as any other record. A flagged record is never
// aggregated.
const (
	// DetailSource is where a record's occurrences came from: the remote
	// IP of an HTTP request, or the Resource of an ingest.skip (its
	// topic, or the keyed hash of one). SourceOverflow is every source
	// past the number the vault tracks at once.
	DetailSource = "source"
	// DetailAggregated is the number of occurrences an aggregate record
	// stands for (decimal); Count is then the sum of their counts.
	DetailAggregated = "aggregated"
	// DetailFirst and DetailLast are the times (RFC 3339, UTC) of the
	// first and last occurrence an aggregate record stands for.
	DetailFirst = "first"
	DetailLast  = "last"
)

// SourceOverflow is the DetailSource of the aggregate of every source past
// the number the vault tracks at once.
const SourceOverflow = "overflow"

// Occurrences is the number of occurrences r stands for: its
// DetailAggregated for an aggregate record, 1 for any other.
func Occurrences(r Record) int {
	if s, ok := r.Details[DetailAggregated]; ok {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
	}
	return 1
}
