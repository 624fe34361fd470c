mod cli;
mod health;
mod helpers;
mod migrations;
mod roles;
mod startup;
