package pricing

// DefaultCSV returns a copy of the shipped price file's bytes (the file
// Default parses), for engines that read prices themselves, such as Athena.
func DefaultCSV() []byte {
	return append([]byte(nil), defaultPrices...)
}
