-- The directory groups of a web session (issue 7): the store front and the
-- AuthService decide launches and SmartAccess filters on them, so they are
-- kept with the session (a restart of the control plane keeps them too).
--
-- A JSON array of group names as the directory returned them at login
-- ('[]' for the local directory, which has no groups, and for sessions
-- created before this migration).
ALTER TABLE web_sessions ADD COLUMN groups_json TEXT NOT NULL DEFAULT '[]';
