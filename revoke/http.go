package revoke

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/certops/certops/failure"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/store"
)

// PathPrefix is where the Handler's routes live: GET PathPrefix+"{issuer}/crl",
// GET and POST PathPrefix+"{issuer}/ocsp", GET PathPrefix+"{issuer}/ca".
const PathPrefix = "/pki/v1/"

// Defaults of Config.
const (
	// DefaultCRLValidity is how long a CRL is valid (nextUpdate −
	// thisUpdate); one is signed again once half of it has passed, or at
	// once when a serial of the issuer is revoked.
	DefaultCRLValidity = 24 * time.Hour
	// DefaultOCSPValidity is the nextUpdate of an OCSP response.
	DefaultOCSPValidity = time.Hour
	// maxOCSPRequest bounds an OCSP request (a few hundred bytes in
	// practice).
	maxOCSPRequest = 8 << 10
)

// Store is what the Handler reads and writes; *store.Store implements it.
type Store interface {
	CRL(ctx context.Context, issuer string) (*store.StoredCRL, int64, error)
	SaveCRL(ctx context.Context, issuer string, build func(last *store.StoredCRL, latest int64) (*store.StoredCRL, error)) (*store.StoredCRL, error)
	RevokedSerials(ctx context.Context, issuer string) ([]store.RevokedSerial, int64, error)
	SerialStatus(ctx context.Context, issuer, serial string) (store.SerialStatus, error)
}

// CAs finds the CA of a local CA issuer; *issuer.Registry implements it.
type CAs interface {
	CA(name string) (*pki.CA, error)
}

// Config tunes the Handler; zero values take the defaults.
type Config struct {
	CRLValidity  time.Duration
	OCSPValidity time.Duration
	Now          func() time.Time
}

// Handler serves the public, read-only /pki/v1/ routes of every local CA
// issuer: its CRL, its OCSP responder and its CA certificate. No token is
// asked: relying parties fetch them.
type Handler struct {
	store Store
	cas   CAs
	cfg   Config
	log   *slog.Logger
	mux   *http.ServeMux
}

// NewHandler returns the /pki/v1/ handler.
func NewHandler(st Store, cas CAs, cfg Config, logger *slog.Logger) *Handler {
	if cfg.CRLValidity <= 0 {
		cfg.CRLValidity = DefaultCRLValidity
	}
	if cfg.OCSPValidity <= 0 {
		cfg.OCSPValidity = DefaultOCSPValidity
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{store: st, cas: cas, cfg: cfg, log: logger, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET "+PathPrefix+"{issuer}/crl", h.crl)
	h.mux.HandleFunc("GET "+PathPrefix+"{issuer}/ca", h.caCert)
	h.mux.HandleFunc("POST "+PathPrefix+"{issuer}/ocsp", h.ocspPost)
	h.mux.HandleFunc("GET "+PathPrefix+"{issuer}/ocsp/{request...}", h.ocspGet)
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) caCert(w http.ResponseWriter, r *http.Request) {
	ca, err := h.cas.CA(r.PathValue("issuer"))
	if err != nil {
		failure.WriteHTTP(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/pkix-cert")
	_, _ = w.Write(ca.Certificate().Raw)
}

func (h *Handler) crl(w http.ResponseWriter, r *http.Request) {
	issuer := r.PathValue("issuer")
	c, err := h.CRL(r.Context(), issuer)
	if err != nil {
		if failure.KindOf(err) != failure.NotFound {
			h.log.Warn("CRL", "issuer", issuer, "err", err)
		}
		failure.WriteHTTP(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	w.Header().Set("Last-Modified", c.ThisUpdate.UTC().Format(http.TimeFormat))
	w.Header().Set("Expires", c.NextUpdate.UTC().Format(http.TimeFormat))
	_, _ = w.Write(c.DER)
}

// CRL returns issuer's current CRL: the stored one while it is fresh
// (signed by the issuer's current CA, listing every revoked serial, and
// less than half its validity old), else a new one signed with the next
// CRL number and stored for every replica.
func (h *Handler) CRL(ctx context.Context, issuer string) (*store.StoredCRL, error) {
	ca, err := h.cas.CA(issuer)
	if err != nil {
		return nil, err
	}
	now := h.cfg.Now()
	stored, latest, err := h.store.CRL(ctx, issuer)
	if err != nil {
		return nil, err
	}
	if h.fresh(stored, latest, ca, now) {
		return stored, nil
	}
	return h.store.SaveCRL(ctx, issuer, func(last *store.StoredCRL, latest int64) (*store.StoredCRL, error) {
		if h.fresh(last, latest, ca, now) {
			return last, nil // another replica signed it meanwhile
		}
		revoked, covers, err := h.store.RevokedSerials(ctx, issuer)
		if err != nil {
			return nil, err
		}
		entries := make([]pki.RevokedEntry, len(revoked))
		for i, r := range revoked {
			entries[i] = pki.RevokedEntry{Serial: r.Serial, RevokedAt: r.RevokedAt, Reason: r.Reason}
		}
		next := &store.StoredCRL{Issuer: issuer, Number: 1, Covers: covers, CASHA256: ca.CASHA256(),
			ThisUpdate: now.Truncate(time.Second), NextUpdate: now.Truncate(time.Second).Add(h.cfg.CRLValidity)}
		if last != nil {
			next.Number = last.Number + 1
		}
		if next.DER, err = ca.SignCRL(next.Number, next.ThisUpdate, next.NextUpdate, entries); err != nil {
			return nil, err
		}
		h.log.Info("CRL signed", "issuer", issuer, "number", next.Number, "revoked", len(entries),
			"next_update", next.NextUpdate)
		return next, nil
	})
}

// fresh tells whether c can still be served at now: it lists every
// revocation up to latest, was signed by ca, and less than half its
// validity has passed.
func (h *Handler) fresh(c *store.StoredCRL, latest int64, ca *pki.CA, now time.Time) bool {
	if c == nil || c.Covers < latest || c.CASHA256 != ca.CASHA256() {
		return false
	}
	half := c.NextUpdate.Sub(c.ThisUpdate) / 2
	return !now.Before(c.ThisUpdate) && now.Before(c.ThisUpdate.Add(half))
}

func (h *Handler) ocspGet(w http.ResponseWriter, r *http.Request) {
	der, err := base64.StdEncoding.DecodeString(r.PathValue("request"))
	if err != nil {
		writeOCSP(w, ocsp.MalformedRequestErrorResponse)
		return
	}
	h.answer(w, r, der)
}

func (h *Handler) ocspPost(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); ct != "application/ocsp-request" {
		failure.WriteHTTP(w, failure.New(failure.Invalid, "Content-Type must be application/ocsp-request, not "+strconv.Quote(ct)))
		return
	}
	der, err := io.ReadAll(io.LimitReader(r.Body, maxOCSPRequest+1))
	if err != nil || len(der) > maxOCSPRequest {
		writeOCSP(w, ocsp.MalformedRequestErrorResponse)
		return
	}
	h.answer(w, r, der)
}

// answer answers one OCSP request for the issuer of the path: good,
// revoked (with time and reason) or unknown (a serial the issuer never
// issued), signed by the issuer's CA; unauthorized for a request about
// another CA's certificates, malformed for one that does not parse.
func (h *Handler) answer(w http.ResponseWriter, r *http.Request, der []byte) {
	issuer := r.PathValue("issuer")
	ca, err := h.cas.CA(issuer)
	if err != nil {
		failure.WriteHTTP(w, err)
		return
	}
	req, err := ocsp.ParseRequest(der)
	if err != nil {
		writeOCSP(w, ocsp.MalformedRequestErrorResponse)
		return
	}
	if !sameIssuer(req, ca.Certificate()) {
		writeOCSP(w, ocsp.UnauthorizedErrorResponse)
		return
	}
	if req.SerialNumber.Sign() <= 0 {
		writeOCSP(w, ocsp.MalformedRequestErrorResponse)
		return
	}
	st, err := h.store.SerialStatus(r.Context(), issuer, req.SerialNumber.Text(16))
	if err != nil {
		h.log.Warn("OCSP", "issuer", issuer, "err", err)
		writeOCSP(w, ocsp.InternalErrorErrorResponse)
		return
	}
	now := h.cfg.Now().Truncate(time.Second)
	a := pki.OCSPAnswer{Serial: req.SerialNumber, Status: ocsp.Good, ThisUpdate: now, NextUpdate: now.Add(h.cfg.OCSPValidity)}
	switch {
	case st.Revoked != nil:
		a.Status, a.RevokedAt, a.Reason = ocsp.Revoked, st.Revoked.RevokedAt, st.Revoked.Reason
	case !st.Issued:
		a.Status = ocsp.Unknown
	}
	resp, err := ca.SignOCSP(a)
	if err != nil {
		h.log.Warn("OCSP", "issuer", issuer, "err", err)
		writeOCSP(w, ocsp.InternalErrorErrorResponse)
		return
	}
	w.Header().Set("Cache-Control", fmt.Sprintf("max-age=%d, public", int(h.cfg.OCSPValidity.Seconds()/2)))
	writeOCSP(w, resp)
}

func writeOCSP(w http.ResponseWriter, der []byte) {
	w.Header().Set("Content-Type", "application/ocsp-response")
	_, _ = w.Write(der)
}

// sameIssuer tells whether an OCSP request is about certificates of ca:
// its issuer name and key hashes match ca's (RFC 6960, 4.1.1).
func sameIssuer(req *ocsp.Request, ca *x509.Certificate) bool {
	if !req.HashAlgorithm.Available() {
		return false
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(ca.RawSubjectPublicKeyInfo, &spki); err != nil {
		return false
	}
	return equalHash(req.HashAlgorithm, ca.RawSubject, req.IssuerNameHash) &&
		equalHash(req.HashAlgorithm, spki.PublicKey.RightAlign(), req.IssuerKeyHash)
}

func equalHash(alg crypto.Hash, data, want []byte) bool {
	hh := alg.New()
	hh.Write(data)
	return string(hh.Sum(nil)) == string(want)
}
