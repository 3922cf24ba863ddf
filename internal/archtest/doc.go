// Package archtest holds no code: its test enforces the one-way import rules
// between kvsrtc's packages (see docs/ARCHITECTURE.md).
package archtest
