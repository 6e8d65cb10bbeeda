package storetest_test

import (
	"testing"

	"github.com/flash-go/flash/store"
	"github.com/flash-go/flash/store/storetest"
)

func TestMemStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return storetest.NewMemStore() })
}
