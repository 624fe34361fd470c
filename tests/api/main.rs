mod cli;
mod health;
mod helpers;
mod migrations;
mod pipeline;
mod roles;
mod startup;
mod webhook;
