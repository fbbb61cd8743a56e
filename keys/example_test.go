package keys_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/keys"
)

func ExampleKeystore() {
	data, err := os.MkdirTemp("", "tenantvault-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(data)

	// A local master key is generated on first use (development only).
	ks, err := keys.OpenKeystore(filepath.Join(data, "keys"), "local://"+filepath.Join(data, "master.key"), nil)
	if err != nil {
		panic(err)
	}
	defer ks.Close()

	acme, _ := events.ParseTenantID("acme")
	c, err := ks.Create(acme)
	if err != nil {
		panic(err)
	}
	ad := []byte("acme|orders|1") // bind tenant, stream and version
	sealed, err := c.Encrypt([]byte(`{"total": 42}`), ad)
	if err != nil {
		panic(err)
	}
	opened, err := c.Decrypt(sealed, ad)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(opened))

	// Every ciphertext names its key, and every key has one owner.
	id, _ := keys.KeyIDOf(sealed)
	owner, _ := ks.Owner(id)
	fmt.Println(owner, id == c.PrimaryKeyID())

	// Stream ids are stored as keyed hashes, not in clear.
	fmt.Println(len(c.Hash("stream", []byte("order-42"))))
	// Output:
	// {"total": 42}
	// acme true
	// 32
}
