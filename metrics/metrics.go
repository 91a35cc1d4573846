// Package metrics writes counters and gauges in the Prometheus text
// exposition format (version 0.0.4), which Prometheus, VictoriaMetrics,
// Grafana Agent, Telegraf and curl all read. It has no state of its own:
// callers take a snapshot of their stats and write it on each scrape.
package metrics

import (
	"bufio"
	"io"
	"strconv"
)

// ContentType is the HTTP Content-Type of the format.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Type is a metric family's type.
type Type string

// Family types used here.
const (
	Counter Type = "counter" // only grows (until a restart)
	Gauge   Type = "gauge"   // goes up and down
)

// Writer writes metric families to an io.Writer, buffering it. Names,
// label names and label values are the caller's constants (snake_case
// ASCII); they are written as given. The first write error is kept and
// returned by Flush. Not safe for concurrent use.
type Writer struct {
	w   *bufio.Writer
	buf []byte
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: bufio.NewWriter(w)} }

// Family starts a metric family: its HELP and TYPE lines.
func (w *Writer) Family(name, help string, t Type) {
	w.buf = append(w.buf[:0], "# HELP "...)
	w.buf = append(w.buf, name...)
	w.buf = append(w.buf, ' ')
	w.buf = append(w.buf, help...)
	w.buf = append(w.buf, "\n# TYPE "...)
	w.buf = append(w.buf, name...)
	w.buf = append(w.buf, ' ')
	w.buf = append(w.buf, t...)
	w.buf = append(w.buf, '\n')
	_, _ = w.w.Write(w.buf)
}

// Sample writes one sample of the current family. labels are name, value
// pairs (an odd one out is ignored).
func (w *Writer) Sample(name string, v uint64, labels ...string) {
	w.buf = append(w.buf[:0], name...)
	if len(labels) >= 2 {
		w.buf = append(w.buf, '{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				w.buf = append(w.buf, ',')
			}
			w.buf = append(w.buf, labels[i]...)
			w.buf = append(w.buf, '=')
			w.buf = strconv.AppendQuote(w.buf, labels[i+1])
		}
		w.buf = append(w.buf, '}')
	}
	w.buf = append(w.buf, ' ')
	w.buf = strconv.AppendUint(w.buf, v, 10)
	w.buf = append(w.buf, '\n')
	_, _ = w.w.Write(w.buf)
}

// One writes a family of a single unlabelled sample.
func (w *Writer) One(name, help string, t Type, v uint64) {
	w.Family(name, help, t)
	w.Sample(name, v)
}

// Flush writes what is buffered and returns the first error met.
func (w *Writer) Flush() error { return w.w.Flush() }
