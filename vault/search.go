package vault

import (
	"context"
	"strconv"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/projections"
)

// Embedder computes the embeddings of texts, one per text, in order:
// for documents published without data.embedding, and for searches by
// text. internal/embed's clients satisfy it. What it is given is tenant
// data leaving the vault: an operator's choice (--embedder).
type Embedder interface {
	Embed(ctx context.Context, texts []string) ([][]float32, error)
}

// SearchRequest is a search of the session's tenant's documents: by
// Vector (an embedding of the tenant's dimension) or by Text (embedded by
// the vault's Embedder), exactly one of them.
type SearchRequest struct {
	Vector []float32
	Text   string
	// K is how many documents at most (1..events.MaxSearchK); 0 means
	// events.DefaultSearchK.
	K int
	// Filter holds attributes a document must have, all of them (values
	// as the document wrote them: "en", "2024", "true").
	Filter map[string]string
}

// Hit is one document a search found: its id (stream), score (cosine
// similarity), text and attributes — never its vector.
type Hit = projections.Hit

// Search returns the documents of the session's tenant nearest to the
// request, best first, and audits the search (action search: the number
// of results and the key ids opened, never the query or the texts). Bad
// requests are EINVALID with a reason code (events.ReasonSearchInvalid,
// ReasonSearchKInvalid, ReasonEmbeddingDimension, ReasonEmbeddingInvalid,
// ReasonEmbedderMissing), audited as rejections; an embedder that fails is
// EUNAVAILABLE. There is no search of more than one tenant: a session
// holds one tenant's store.
func (s *Session) Search(ctx context.Context, req SearchRequest) ([]Hit, error) {
	var hits []Hit
	err := s.read(ctx, audit.ActionSearch, "search", func(c projections.Cipher) (int, error) {
		q, err := s.query(ctx, req)
		if err != nil {
			return 0, err
		}
		hits, err = s.store.Search(c, q)
		return len(hits), err
	})
	if err != nil {
		return nil, err
	}
	return hits, nil
}

// query validates req and embeds its text.
func (s *Session) query(ctx context.Context, req SearchRequest) (projections.SearchQuery, error) {
	q := projections.SearchQuery{Vector: req.Vector, K: req.K, Filter: req.Filter}
	if q.K == 0 {
		q.K = events.DefaultSearchK
	}
	switch {
	case (len(req.Vector) > 0) == (req.Text != ""):
		return q, events.Reasonf(events.EINVALID, events.ReasonSearchInvalid, "a search has either a vector or a text")
	case q.K < 1 || q.K > events.MaxSearchK:
		return q, events.Reasonf(events.EINVALID, events.ReasonSearchKInvalid, "k must be 1 to %d", events.MaxSearchK)
	case len(req.Text) > events.MaxDocumentText:
		return q, events.Reasonf(events.EINVALID, events.ReasonSearchInvalid, "the text of a search is over %d bytes", events.MaxDocumentText)
	case len(req.Filter) > events.MaxAttributes:
		return q, events.Reasonf(events.EINVALID, events.ReasonSearchInvalid, "a filter has at most %d terms", events.MaxAttributes)
	case len(req.Vector) > events.MaxEmbeddingDim:
		return q, events.Reasonf(events.EINVALID, events.ReasonEmbeddingInvalid, "a vector has at most %d values", events.MaxEmbeddingDim)
	}
	if req.Text == "" {
		return q, nil
	}
	if s.v.cfg.Embedder == nil {
		return q, events.Reasonf(events.EINVALID, events.ReasonEmbedderMissing, "a search by text needs an embedder (vaultd --embedder); search by vector")
	}
	vs, err := s.v.cfg.Embedder.Embed(ctx, []string{req.Text})
	if err != nil || len(vs) != 1 {
		return q, events.Reasonf(events.EUNAVAILABLE, events.ReasonEmbedderFailed, "the embedder did not embed the query")
	}
	q.Vector = vs[0]
	return q, nil
}

// Reject audits a request of the session that was refused before it
// reached the store (a body that does not decode), as a rejection with
// err's reason code, and returns err.
func (s *Session) Reject(ctx context.Context, action audit.Action, resource string, err error) error {
	return s.read(ctx, action, resource, func(projections.Cipher) (int, error) { return 0, err })
}

// embedBatch is how many texts one Embed call takes at most.
const embedBatch = 64

// embedDocuments computes, with the vault's Embedder, the embedding of
// every document event of recs that has none, and writes it into the
// event's data (data.embedding), so that the sealed log holds it and the
// index can be rebuilt from the log. A document the embedder does not
// embed is turned into a rejection (events.ReasonEmbedderFailed): it is
// quarantined, and ingest goes on.
func (v *Vault) embedDocuments(ctx context.Context, msgs []Message, recs []projections.Record) {
	var idx []int
	var texts []string
	for i := range recs {
		ev := recs[i].Event
		if ev == nil || !events.IsDocumentType(ev.Type) || ev.IsDelete() {
			continue
		}
		d, err := events.ParseDocument(ev.Data)
		if err != nil || d.Embedding != nil {
			continue // the store quarantines it, or indexes it as it is
		}
		idx, texts = append(idx, i), append(texts, d.Text)
	}
	for start := 0; start < len(idx); start += embedBatch {
		end := min(start+embedBatch, len(idx))
		vs, err := v.cfg.Embedder.Embed(ctx, texts[start:end])
		for j, i := range idx[start:end] {
			ev := recs[i].Event
			if err == nil && len(vs) == end-start && events.CheckVector(vs[j]) == nil {
				ev.Data = events.AppendMergePatch(nil, ev.Data, embeddingPatch(vs[j]))
				continue
			}
			recs[i].Event = nil
			recs[i].Reject = &projections.Rejection{Code: events.EUNAVAILABLE, ReasonCode: events.ReasonEmbedderFailed,
				Reason: "the embedder did not return an embedding for the document's text", Raw: v.evidence(msgs[i].Value)}
		}
	}
}

// embeddingPatch is the merge patch {"embedding":[...]}.
func embeddingPatch(vec []float32) []byte {
	b := make([]byte, 0, 14+len(vec)*12)
	b = append(b, `{"embedding":[`...)
	for i, x := range vec {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendFloat(b, float64(x), 'g', -1, 32)
	}
	return append(b, "]}"...)
}
