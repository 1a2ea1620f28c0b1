"""Africa's Talking Voice: the callback form it posts, and the XML actions it carries out."""
