package bedrocklocal

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/meter-dev/meter/internal/atomicfile"
)

// delivery batches the records the server delivers as log files (CloudTrail
// files, model invocation logs): every batch records, or on flush, write
// delivers the pending ones as one file; on failure they stay pending for the
// next delivery.
type delivery struct {
	batch int
	write func(records [][]byte) error

	pmu     sync.Mutex
	pending [][]byte
	bgErr   error

	fileMu sync.Mutex // one delivery at a time
}

func (d *delivery) add(raw []byte) {
	d.pmu.Lock()
	d.pending = append(d.pending, raw)
	full := len(d.pending) >= d.batch
	d.pmu.Unlock()
	if full {
		d.flushBackground()
	}
}

// flushBackground delivers and keeps the error for Close, for deliveries no
// caller waits on.
func (d *delivery) flushBackground() {
	if err := d.flush(); err != nil {
		d.pmu.Lock()
		d.bgErr = errors.Join(d.bgErr, err)
		d.pmu.Unlock()
	}
}

func (d *delivery) deliveryErr() error {
	d.pmu.Lock()
	defer d.pmu.Unlock()
	return d.bgErr
}

// flush delivers the pending records now.
func (d *delivery) flush() error {
	d.fileMu.Lock()
	defer d.fileMu.Unlock()
	d.pmu.Lock()
	records := d.pending
	d.pending = nil
	d.pmu.Unlock()
	if len(records) == 0 {
		return nil
	}
	if err := d.write(records); err != nil {
		d.pmu.Lock()
		d.pending = append(records, d.pending...)
		d.pmu.Unlock()
		return err
	}
	return nil
}

// writeGzipFile writes body gzipped to dir/name whole or not at all.
func writeGzipFile(dir, name string, body []byte) error {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(body)
	if err := zw.Close(); err != nil {
		return fmt.Errorf("compressing %s: %w", name, err)
	}
	return atomicfile.Write(filepath.Join(dir, name), &buf, 0o644)
}
