// Package tlsfiles serves TLS from a certificate and key on disk that an
// operator (or cert-manager, or certbot) replaces while the server runs: the
// pair is read again on the first handshake after either file changes, and a
// pair that cannot be read keeps the last good one in use.
package tlsfiles

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Config returns a server TLS configuration with modern defaults (TLS 1.2 or
// later, Go's cipher choice, HTTP/2 offered by net/http) whose certificate is
// read from certFile and keyFile, reloaded when either changes. It fails when
// the pair cannot be loaded at first.
func Config(certFile, keyFile string, log *slog.Logger) (*tls.Config, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &reloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.load(); err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.get}, nil
}

type reloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu    sync.Mutex
	cert  *tls.Certificate
	stamp [2]time.Time
}

func stamp(path string) time.Time {
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

func (r *reloader) load() error {
	st := [2]time.Time{stamp(r.certFile), stamp(r.keyFile)}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert, r.stamp = &cert, st
	return nil
}

// get is tls.Config.GetCertificate: on each handshake it looks at the files'
// times (two stats; handshakes are per connection, not per request) and
// reloads the pair when either has changed.
func (r *reloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st := [2]time.Time{stamp(r.certFile), stamp(r.keyFile)}; st != r.stamp {
		if err := r.load(); err != nil {
			r.log.Error("reloading the TLS certificate; keeping the one in use", "err", err)
			r.stamp = st // try again only after the next change
		} else {
			r.log.Info("TLS certificate reloaded", "cert", r.certFile)
		}
	}
	return r.cert, nil
}
