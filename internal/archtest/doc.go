// Package archtest owns tenantvault's architecture tests: the import rules
// of DESIGN.md's package table and STYLE.md's "Shape of the house", written
// once as a table (imports_test.go) and checked against the real import
// graph on every `go test ./...`.
//
// The table has two halves. The layers say, for every package of the
// module, which packages of ours and which third-party modules it may
// import directly (DESIGN's "may import" column); the standard library is
// always allowed, except what the dependency rules or a layer forbid. The
// dependency rules say, for each dependency that lives in one place (Tink,
// Badger, kafka-go and franz-go, watermill, the KMS clients, net/http), the
// only packages that may import it directly. cmd/* may import anything,
// except a test-only package (internal/vaulttest), which no non-test file
// imports.
// Where today's code goes beyond DESIGN, the table lists the import as an
// exception with its reason; the test fails on any import that is neither
// allowed nor listed, on an exception that no longer happens, and on a
// package that has no layer, so neither the code nor the table drifts.
// The "what it must never import" sentences of each package's doc.go say
// the same as the table, and name this package as the one that enforces
// them.
//
// Only direct imports of non-test files count: a package may depend on a
// forbidden package through another one of ours that is allowed to import
// it (vault reaches Badger only through projections), and test files
// (TestImports, XTestImports) may import what they need. Imports are read
// for linux, darwin and windows, so a file behind a build constraint for
// one of them is not missed.
//
// The package has no non-test code.
package archtest
