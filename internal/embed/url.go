package embed

import (
	"fmt"
	"net/url"
	"strings"
)

// parseURL checks an embedder URL and completes its path.
func parseURL(spec string) (string, error) {
	u, err := url.Parse(spec)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("embed: --embedder must be hash:N or an http(s) URL of an OpenAI-compatible embeddings endpoint")
	}
	if u.User != nil {
		return "", fmt.Errorf("embed: --embedder URL must not hold credentials (use --embedder-key-file)")
	}
	p := strings.TrimSuffix(u.Path, "/")
	switch {
	case strings.HasSuffix(p, "/embeddings"):
	case strings.HasSuffix(p, "/v1"):
		p += "/embeddings"
	default:
		p += "/v1/embeddings"
	}
	u.Path = p
	return u.String(), nil
}
