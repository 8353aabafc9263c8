"""Attribution marts (journeys and multi-touch credits) in the warehouse."""
