package parquetio

import (
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go/format"
)

// zstdCodec compresses pages with klauspost/compress's fastest ZSTD level
// and entropy-coded literals even where a block finds no match. The ids
// (random UUIDs, 40 of every event's ~47 bytes) have no matches to find but
// their hex digits Huffman-code to half a byte each: the default level spends
// its time searching for matches, the fastest level alone stores such blocks
// raw (79 B/event). This setting writes smaller files than the default level
// (46.6 against 47.6 B/event on bench/pipeline's day) for about half of its
// CPU; BENCHMARKS.md has the figures. The frames are plain ZSTD, read by
// every reader of ZSTD pages.
//
// A codec is safe for concurrent use: each Encode takes an encoder from a pool.
type zstdCodec struct {
	encoders sync.Pool // *zstd.Encoder
	decoders sync.Pool // *zstd.Decoder
}

func (c *zstdCodec) String() string { return "ZSTD" }

func (c *zstdCodec) CompressionCodec() format.CompressionCodec { return format.Zstd }

func (c *zstdCodec) Encode(dst, src []byte) ([]byte, error) {
	e, _ := c.encoders.Get().(*zstd.Encoder)
	if e == nil {
		var err error
		e, err = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithAllLitEntropyCompression(true),
			zstd.WithEncoderConcurrency(1),
			zstd.WithZeroFrames(true),
			zstd.WithEncoderCRC(false),
			// A page is about DefaultPageBytes: a window of that size
			// finds the same matches as the level's 4 MiB and encodes
			// about 10% faster (BENCHMARKS.md).
			zstd.WithWindowSize(DefaultPageBytes))
		if err != nil {
			return nil, err
		}
	}
	out := e.EncodeAll(src, dst[:0])
	c.encoders.Put(e)
	return out, nil
}

func (c *zstdCodec) Decode(dst, src []byte) ([]byte, error) {
	d, _ := c.decoders.Get().(*zstd.Decoder)
	if d == nil {
		var err error
		if d, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1)); err != nil {
			return nil, err
		}
	}
	out, err := d.DecodeAll(src, dst[:0])
	c.decoders.Put(d)
	return out, err
}
