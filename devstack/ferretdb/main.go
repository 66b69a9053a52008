// Command ferretdb-embedded runs FerretDB 1.24 with the SQLite backend as a
// MongoDB-wire server for the local stack and tests.
//
// FerretDB is embedded through its public `ferretdb` package rather than built
// from cmd/ferretdb: a plain `go install` of v1.24.x panics at start because
// build/version/version.txt is not in the module (FerretDB#2982); the check is
// skipped when the main module is not FerretDB's own.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	dataDir := flag.String("data-dir", "", "directory that holds one SQLite file per database (required)")
	logLevel := flag.String("log-level", "warn", "debug, info, warn or error")
	flag.Parse()

	if *dataDir == "" {
		log.Fatal("ferretdb-embedded: --data-dir is required")
	}
	abs, err := filepath.Abs(*dataDir)
	if err != nil {
		log.Fatalf("ferretdb-embedded: --data-dir: %v", err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		log.Fatalf("ferretdb-embedded: --data-dir: %v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// The SQLite URL must use file:, end with a slash and name an existing directory.
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/",
		Logger:    newLogger(*logLevel),
	})
	if err != nil {
		log.Fatalf("ferretdb-embedded: %v", err)
	}

	fmt.Printf("ferretdb listening on %s\n", *listen)
	if err := f.Run(ctx); err != nil && ctx.Err() == nil {
		log.Fatalf("ferretdb-embedded: %v", err)
	}
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		log.Fatalf("ferretdb-embedded: --log-level: %v", err)
	}
	return slog.New(&lazyHandler{inner: slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})})
}

// lazyHandler defers WithAttrs and WithGroup until a record is actually written.
//
// FerretDB derives a logger with the SQL text and arguments as attributes for every statement it
// runs; slog's TextHandler formats (quotes) those attributes eagerly in WithAttrs, even when the
// level drops every record. That was a fifth of FerretDB's CPU time on insert-heavy work
// (measured with pprof during bench/campaign). Here the attributes are only kept, and applied to
// the real handler when a record passes the level check.
type lazyHandler struct {
	inner slog.Handler
	steps []lazyStep
}

type lazyStep struct {
	group string
	attrs []slog.Attr
}

func (h *lazyHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

func (h *lazyHandler) Handle(ctx context.Context, r slog.Record) error {
	inner := h.inner
	for _, s := range h.steps {
		if s.attrs != nil {
			inner = inner.WithAttrs(s.attrs)
		} else {
			inner = inner.WithGroup(s.group)
		}
	}
	return inner.Handle(ctx, r)
}

func (h *lazyHandler) with(step lazyStep) *lazyHandler {
	steps := make([]lazyStep, len(h.steps), len(h.steps)+1)
	copy(steps, h.steps)
	return &lazyHandler{inner: h.inner, steps: append(steps, step)}
}

func (h *lazyHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	return h.with(lazyStep{attrs: attrs})
}

func (h *lazyHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return h.with(lazyStep{group: name})
}
