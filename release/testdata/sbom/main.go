// Command sbom is a small program that links a module (go-cmp), for the
// SBOM test to read the build information of.
package main

import (
	"fmt"

	"github.com/google/go-cmp/cmp"
)

func main() { fmt.Println(cmp.Diff(1, 2)) }
