package flash_test

import (
	"errors"
	"fmt"

	"github.com/flash-go/flash"
)

// A function returns an error with a code; an LB route answers its HTTP
// status (404 here), a QB job carries it in its output, and the caller,
// here or on another endpoint, reads it back with CodeOf or errors.As.
func ExampleErrorf() {
	err := fmt.Errorf("loading profile: %w", flash.Errorf(flash.CodeNotFound, "no user %q", "ada"))
	fmt.Println(flash.CodeOf(err), flash.CodeOf(err).HTTPStatus())

	var fe *flash.Error
	if errors.As(err, &fe) {
		fmt.Println(fe.Code, fe)
	}
	fmt.Println(flash.CodeOf(errors.New("no code")))
	// Output:
	// not_found 404
	// not_found no user "ada"
	// unknown
}
