package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"

	"github.com/pushd/pushd/configs"
)

// checkSecretFiles refuses, or with secrets.unsafe_permissions: warn only
// warns about, each secret file that other users may read or change, by
// PostgreSQL's rule for its key file: owned by pushd's user, no access for
// group or others (0600 or less); owned by root, read access for the group
// at most (0640 or less, as deploy/ installs them, root:pushd). The message
// names the file and the fix.
func checkSecretFiles(cfg *configs.Config, logger *slog.Logger) error {
	euid := uint32(os.Geteuid())
	var errs []error
	for _, f := range cfg.SecretFiles() {
		info, err := os.Stat(f.Path) // through symlinks, as Kubernetes mounts secrets
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.Key, err))
			continue
		}
		owner, known := fileOwner(info)
		problem := unsafeSecret(info.Mode().Perm(), owner, known, euid)
		switch {
		case problem == "":
			continue
		case cfg.Secrets.UnsafePermissions == "warn":
			logger.Warn("secret file others may read or change; chmod 600 it (secrets.unsafe_permissions is warn)",
				"key", f.Key, "path", f.Path, "mode", fmt.Sprintf("%04o", info.Mode().Perm()), "problem", problem)
			continue
		}
		errs = append(errs, fmt.Errorf("%s: %s has mode %04o: %s; run `chmod 600 %s` "+
			"(or set secrets.unsafe_permissions: warn, PUSHD_SECRETS_UNSAFE_PERMISSIONS=warn, where secrets are mounted read-only 0644)",
			f.Key, f.Path, info.Mode().Perm(), problem, f.Path))
	}
	return errors.Join(errs...)
}

// unsafeSecret says what is wrong with a secret file's mode and owner,
// for pushd running as euid; "" if nothing is.
func unsafeSecret(perm fs.FileMode, owner uint32, ownerKnown bool, euid uint32) string {
	switch {
	case !ownerKnown || owner == euid && owner != 0:
		if perm&0o077 != 0 {
			return "group or others may read or write it"
		}
	case owner == 0:
		if perm&0o037 != 0 {
			return "others may read it, or the group may write it"
		}
	default:
		return fmt.Sprintf("it is owned by uid %d, neither pushd's user nor root, who may change it", owner)
	}
	return ""
}
