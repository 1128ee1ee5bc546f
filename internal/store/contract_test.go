package store_test

import (
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/internal/store/storetest"
)

// The store contract is internal/store/storetest, so that stores outside this
// package can be held to it too. The tests of package store itself cannot
// import storetest, which imports store, so this external test file hands
// storetest.Run to them before any test runs.
func init() { store.RunStoreContract = storetest.Run }
