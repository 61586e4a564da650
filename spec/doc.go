// Package spec defines certops' desired-state documents (Issuer, Agent,
// Certificate, AlertPolicy, NotificationChannel, BackupPolicy, Revocation), loads them
// strictly from YAML files, and validates a revision as a whole, reporting
// every problem as FILE:LINE: message. It imports nothing else of certops.
package spec
