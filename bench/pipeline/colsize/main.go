// Command colsize prints the compressed bytes of every column over Parquet
// files, summed, and their encodings: what each column costs per event.
//
//	go run ./bench/pipeline/colsize FILE...
package main

import (
	"fmt"
	"log"
	"os"
	"sort"

	"github.com/parquet-go/parquet-go"
)

func main() {
	sizes := map[string]int64{}
	encs := map[string]string{}
	var rows, total int64
	for _, p := range os.Args[1:] {
		f, err := os.Open(p)
		if err != nil {
			log.Fatal(err)
		}
		st, _ := f.Stat()
		total += st.Size()
		pf, err := parquet.OpenFile(f, st.Size())
		if err != nil {
			log.Fatalf("%s: %v", p, err)
		}
		md := pf.Metadata()
		rows += md.NumRows
		for _, rg := range md.RowGroups {
			for _, cc := range rg.Columns {
				name := cc.MetaData.PathInSchema[len(cc.MetaData.PathInSchema)-1]
				sizes[name] += cc.MetaData.TotalCompressedSize
				encs[name] = fmt.Sprint(cc.MetaData.Encoding)
			}
		}
		f.Close()
	}
	names := make([]string, 0, len(sizes))
	for n := range sizes {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return sizes[names[i]] > sizes[names[j]] })
	for _, n := range names {
		fmt.Printf("%-26s %8.2f B/row  %s\n", n, float64(sizes[n])/float64(rows), encs[n])
	}
	fmt.Printf("%-26s %8.2f B/row (%d rows, %d files)\n", "file total", float64(total)/float64(rows), rows, len(os.Args)-1)
}
