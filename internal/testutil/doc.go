// Package testutil holds small helpers shared by the module's tests: a
// buffer a process and a test may use at once, and a self-signed
// certificate written as PEM files. It uses the standard library only and
// is imported by test files only.
package testutil
