package doctor

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/ironclaw/ironclaw/daemon/keys"
)

// checkMatrix runs only when [matrix] names a homeserver: the daemon does
// not start without the channel its config names, so each failure is one a
// conversation meets. It sends the homeserver nothing but the public
// /versions request and, with an access token file, /account/whoami with
// that token (to the configured homeserver only). A password is never sent:
// logging in would create a device; `ironclaw matrix login` does that.
func checkMatrix(ctx context.Context, o Options) []Check {
	m := o.Config.Matrix
	if m.Homeserver == "" {
		return nil
	}
	base := strings.TrimRight(m.Homeserver, "/")
	reach := Check{Name: "matrix", Needed: true}
	var versions struct {
		Versions []string `json:"versions"`
	}
	if err := getJSON(ctx, o.HTTP, base+"/_matrix/client/versions", "", &versions); err != nil || len(versions.Versions) == 0 {
		reach.Status = Fail
		reach.Detail = fmt.Sprintf("the homeserver %s does not answer as a Matrix homeserver: %v", base, err)
		reach.Remedy = "check matrix.homeserver (scheme and host only) and that the homeserver runs"
		return []Check{reach}
	}
	reach.Status, reach.Detail = OK, fmt.Sprintf("%s answers (%s)", base, versions.Versions[len(versions.Versions)-1])
	login := Check{Name: "matrix.login", Needed: true}
	if m.AccessTokenFile == "" {
		// The daemon logs in with the password file at start.
		if _, err := keys.ReadSecretFile(m.PasswordFile, "matrix.password_file"); err != nil {
			login.Status, login.Detail = Fail, err.Error()
			login.Remedy = "put the bot's password on the first line of matrix.password_file, mode 0600, owned by the daemon's user"
			return []Check{reach, login}
		}
		login.Status, login.Detail = OK, "password file present and private; the login itself is checked by `ironclaw matrix login` (doctor never logs in: that would make a device)"
		return []Check{reach, login}
	}
	secret, err := keys.ReadSecretFile(m.AccessTokenFile, "matrix.access_token_file")
	if err != nil {
		login.Status, login.Detail = Fail, err.Error()
		login.Remedy = "put the bot's access token on the first line of matrix.access_token_file, mode 0600"
		return []Check{reach, login}
	}
	token, _, _ := strings.Cut(string(secret), "\n")
	clear(secret)
	var who struct {
		UserID string `json:"user_id"`
	}
	if err := getJSON(ctx, o.HTTP, base+"/_matrix/client/v3/account/whoami", strings.TrimSpace(token), &who); err != nil {
		login.Status, login.Detail = Fail, "the homeserver refuses the bot's access token: "+err.Error()
		login.Remedy = "the token was revoked or belongs elsewhere: use matrix.password_file and run `ironclaw matrix login`"
		return []Check{reach, login}
	}
	if who.UserID != m.UserID {
		login.Status, login.Detail = Fail, fmt.Sprintf("the access token belongs to %s, not matrix.user_id %s", who.UserID, m.UserID)
		login.Remedy = "use a token of the bot account, or fix matrix.user_id"
		return []Check{reach, login}
	}
	login.Status, login.Detail = OK, "logged in as "+who.UserID
	return []Check{reach, login}
}

// getJSON GETs url (with a bearer token if given) and decodes a 200 answer.
func getJSON(ctx context.Context, c *http.Client, url, token string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return doJSON(c, req, out)
}
