package flash

import (
	"github.com/flash-go/flash/provider"
	"github.com/flash-go/flash/provider/local"
	"github.com/flash-go/flash/provider/runpod"
	"github.com/flash-go/flash/store"
	"github.com/flash-go/flash/store/etcd"
	"github.com/flash-go/flash/store/sqlite"
)

// DefaultStores are the state stores FLASH_STATE_URL can name, by URL
// scheme. A new store backend is added here and nowhere else in this package.
func DefaultStores() store.Openers {
	return store.Openers{"sqlite": sqlite.OpenURL, "etcd": etcd.OpenURL}
}

// DefaultProviders are the providers FLASH_PROVIDER can name. A new provider
// is added here and nowhere else in this package.
func DefaultProviders() provider.Factories {
	return provider.Factories{"local": local.Factory, "none": provider.None, "runpod": runpod.Factory}
}
