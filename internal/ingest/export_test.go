package ingest

// SetBeforeEnd has r call f in each transactional round between the
// produce of its changelog records and the End of its transaction.
func SetBeforeEnd(r *RoundRunner, f func()) { r.beforeEnd = f }
