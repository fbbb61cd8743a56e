package main

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
)

func TestReadyzURL(t *testing.T) {
	for _, tt := range []struct {
		addr, want string
		wantErr    bool
	}{
		{"", "http://127.0.0.1:8080/readyz", false},
		{"0.0.0.0:8080", "http://127.0.0.1:8080/readyz", false},
		{":9000", "http://127.0.0.1:9000/readyz", false},
		{"[::]:8080", "http://127.0.0.1:8080/readyz", false},
		{"10.1.2.3:8080", "http://10.1.2.3:8080/readyz", false},
		{"[::1]:8081", "http://[::1]:8081/readyz", false},
		{"localhost:8080", "http://localhost:8080/readyz", false},
		{"127.0.0.1:0", "", true},
		{"no-port", "", true},
	} {
		got, err := readyzURL(tt.addr)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("readyzURL(%q) = %q, %v; want %q, error %v", tt.addr, got, err, tt.want, tt.wantErr)
		}
	}
}

// readyServer answers /readyz with status, and counts what it was asked.
func readyServer(t *testing.T, status int) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" || r.Header.Get("Authorization") != "" {
			http.Error(w, "unexpected request", http.StatusTeapot)
			return
		}
		w.WriteHeader(status)
		io.WriteString(w, `{"status":"x"}`)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestHealthcheck(t *testing.T) {
	ready, notReady := readyServer(t, http.StatusOK), readyServer(t, http.StatusServiceUnavailable)
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	env := func(addr string) func(string) string {
		return func(k string) string {
			if k == "TENANTVAULT_HTTP_ADDR" {
				return addr
			}
			return ""
		}
	}
	for _, tt := range []struct {
		name    string
		args    []string
		env     string
		wantErr string // "" for success
	}{
		{"ready", []string{"--url", ready.URL + "/readyz"}, "", ""},
		{"ready from the environment", nil, ready.Listener.Addr().String(), ""},
		{"not ready", []string{"--url", notReady.URL + "/readyz"}, "", "503"},
		{"not ready from the environment", nil, notReady.Listener.Addr().String(), "503"},
		{"not running", []string{"--url", gone.URL + "/readyz"}, "", "connect"},
		{"not a URL", []string{"--url", "127.0.0.1:8080/readyz"}, "", "not an http(s) URL"},
		{"stray argument", []string{"now"}, "", "no arguments"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := healthcheck(tt.args, env(tt.env), io.Discard)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("healthcheck(%q) = %v, want success", tt.args, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("healthcheck(%q) = %v, want an error with %q", tt.args, err, tt.wantErr)
			}
		})
	}
}

// TestHealthcheckCommand runs the binary as the container healthcheck
// does: exit 0 when ready, 1 otherwise.
func TestHealthcheckCommand(t *testing.T) {
	for _, tt := range []struct {
		status   int
		wantExit int
	}{
		{http.StatusOK, 0},
		{http.StatusServiceUnavailable, 1},
	} {
		srv := readyServer(t, tt.status)
		cmd := exec.Command(vaultdBin, "healthcheck", "--url", srv.URL+"/readyz")
		out, err := cmd.CombinedOutput()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tt.wantExit {
			t.Errorf("vaultd healthcheck against a %d = exit %d (%s), want %d", tt.status, code, out, tt.wantExit)
		}
	}
}
