// Package messages is the vocabulary of twopc: the typed messages the
// protocol roles exchange, the operations a transaction carries, the records
// the write-ahead log stores, and the rules that say which node owns a key.
//
// Every type that crosses the wire is a plain struct of fixed-size fields,
// strings and slices. There are no maps: gob pre-allocates a map from the
// size the sender claims, so a tiny malicious message can make a receiver
// allocate gigabytes.
package messages
