// Package embed computes embeddings of texts for the vault's vector index
// (vault.Embedder): Client calls an OpenAI-compatible /v1/embeddings
// endpoint over HTTP, and Hash is a small deterministic pure-Go hashing
// embedder (feature hashing of words and character trigrams) for tests,
// demos and vaultbench — not a language model, but texts sharing words
// come out near each other.
//
// No model weights are downloaded or loaded: the vault never runs a model
// itself. Parse turns vaultd's --embedder value into one of the two.
//
// It never logs, and its errors never hold a text, an embedding, a
// response body or the API key: what it is given is tenant data. It
// imports only the standard library (net/http for Client: an exception
// recorded in internal/archtest, like the alert webhook's).
package embed
