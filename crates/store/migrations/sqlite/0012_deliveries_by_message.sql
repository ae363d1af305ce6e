-- Every delivery of a message, resends included: a call's deliveries are found through their
-- messages (`?call=`), and "resend all failed" asks whether a message has a newer delivery.
-- PostgreSQL has had this index since its first migration.
CREATE INDEX deliveries_by_message ON deliveries(message_id);
