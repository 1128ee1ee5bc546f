package store

import (
	"context"
	"io"
	"strings"
)

// WithPrefix returns a view of st in which every key lives under prefix: Put,
// Get and Delete of "k" act on prefix+"k", and List returns keys with prefix
// taken off, so code written for the store's layout (events/, chargeback/...)
// runs unchanged inside a staging area. A prefix without a trailing slash gets
// one, so "_replay/x" never shares keys with "_replay/xy".
func WithPrefix(st Store, prefix string) Store {
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	if p, ok := st.(*prefixed); ok {
		return &prefixed{st: p.st, prefix: p.prefix + prefix}
	}
	return &prefixed{st: st, prefix: prefix}
}

type prefixed struct {
	st     Store
	prefix string
}

func (p *prefixed) Put(ctx context.Context, key string, body io.Reader) error {
	return p.st.Put(ctx, p.prefix+key, body)
}

func (p *prefixed) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	return p.st.Get(ctx, p.prefix+key)
}

func (p *prefixed) List(ctx context.Context, prefix string) ([]Object, error) {
	objs, err := p.st.List(ctx, p.prefix+prefix)
	if err != nil {
		return nil, err
	}
	out := make([]Object, 0, len(objs))
	for _, o := range objs {
		if k, ok := strings.CutPrefix(o.Key, p.prefix); ok {
			out = append(out, Object{Key: k, Size: o.Size})
		}
	}
	return out, nil
}

func (p *prefixed) Delete(ctx context.Context, key string) error {
	return p.st.Delete(ctx, p.prefix+key)
}

var _ Store = (*prefixed)(nil)
