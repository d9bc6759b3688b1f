// Package deploy holds what twopc is deployed with — Dockerfile (the
// image), compose.yaml (four nodes and their certificates on one Docker
// host) and k8s/ (a StatefulSet behind a headless Service) — and, in its
// test, the check that every flag they pass to cmd/node and cmd/certs is
// one those commands have, and that the files agree with each other (ids,
// peers, certificate hosts, probes, volumes). See the README's Deploying
// section. There is no Go code to import here.
package deploy
