"""Channels: messages straight in from WhatsApp, Messenger, Instagram, Twilio, Telegram."""
