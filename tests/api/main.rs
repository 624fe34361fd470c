mod cli;
mod health;
mod helpers;
mod startup;
