package compaction

import (
	"github.com/meter-dev/meter/internal/parquetio"
	"github.com/meter-dev/meter/schemas"
)

// dailyChunk is how many daily rows go to the Parquet writer at a time.
const dailyChunk = 4096

// asyncDaily encodes the daily rows on its own goroutine, chunk by chunk, so
// that merging the sorted runs (or the rows' source) and the Parquet encoding
// and compression run on both cores. Rows reach the writer in the order they
// were added, in chunks of dailyChunk rows, so the file is the same on every run.
type asyncDaily struct {
	pw   *parquetio.Writer[schemas.DailyRow]
	cur  []schemas.DailyRow
	todo chan []schemas.DailyRow
	free chan []schemas.DailyRow
	done chan error
	err  error
}

func newAsyncDaily(pw *parquetio.Writer[schemas.DailyRow]) *asyncDaily {
	a := &asyncDaily{pw: pw, todo: make(chan []schemas.DailyRow, 2), free: make(chan []schemas.DailyRow, 3), done: make(chan error, 1)}
	for i := 0; i < 3; i++ {
		a.free <- make([]schemas.DailyRow, 0, dailyChunk)
	}
	go func() {
		var err error
		for chunk := range a.todo {
			if err == nil {
				err = pw.WriteRows(chunk)
			}
			clear(chunk)
			a.free <- chunk[:0]
		}
		a.done <- err
	}()
	return a
}

// write adds one row (copied).
func (a *asyncDaily) write(r *schemas.DailyRow) error {
	if a.cur == nil {
		a.cur = <-a.free
	}
	a.cur = append(a.cur, *r)
	if len(a.cur) == dailyChunk {
		a.todo <- a.cur
		a.cur = nil
	}
	return nil
}

// close sends the last chunk, waits for the writer and closes it.
func (a *asyncDaily) close() error {
	if len(a.cur) > 0 {
		a.todo <- a.cur
	}
	a.cur = nil
	close(a.todo)
	if err := <-a.done; err != nil {
		return err
	}
	return a.pw.Close()
}

// abort stops the writer goroutine after an error elsewhere.
func (a *asyncDaily) abort() {
	if a.todo != nil {
		close(a.todo)
		<-a.done
		a.todo = nil
	}
}
